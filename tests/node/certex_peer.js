// An independent SOAP client (node-soap) for the CERTEX contract: it reads the WSDL the
// customs side serves, builds its requests from that WSDL alone and prints what it got back.
//
//   node certex_peer.js WSDL_URL < calls.json
//
// calls.json: {"operation": "SubmitCertificates" | "SubmitCertificate", "args": {...}} or a
// list of them; a certificate's XML goes in as {"$xml": "<cert:Certificate ...>"}, as
// node-soap inserts raw XML. Prints one JSON line per call: {"operation", "result"} or
// {"operation", "fault": {"code", "reason", "transient"}}. Exits 2 on anything else.
"use strict";

const soap = require("soap");

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

function faultOf(error) {
  const body = error && error.root && error.root.Envelope && error.root.Envelope.Body;
  const fault = body && body.Fault;
  if (!fault) return null;
  const detail = (fault.detail && fault.detail.CertexFault) || {};
  return {
    code: detail.Code || null,
    reason: detail.Reason || fault.faultstring || null,
    transient: detail.Transient === undefined ? null : String(detail.Transient) === "true",
  };
}

async function main() {
  const [wsdl] = process.argv.slice(2);
  if (!wsdl) throw new Error("usage: node certex_peer.js WSDL_URL < calls.json");
  const calls = [].concat(await readStdin());
  const client = await soap.createClientAsync(wsdl, { disableCache: true });
  for (const call of calls) {
    const method = client[call.operation + "Async"];
    if (typeof method !== "function") {
      throw new Error(`the WSDL at ${wsdl} has no operation ${call.operation}`);
    }
    try {
      const [result] = await method.call(client, call.args, { timeout: 30000 });
      console.log(JSON.stringify({ operation: call.operation, result }));
    } catch (error) {
      const fault = faultOf(error);
      if (fault === null) throw error;
      console.log(JSON.stringify({ operation: call.operation, fault }));
    }
  }
}

main().catch((error) => {
  console.error(String((error && error.stack) || error));
  process.exit(2);
});
