"""The HTTP foundation of the project's own servers (the customs simulator, the query service):
ASGI applications served by uvicorn, hardened for the open network.

- `server`: `HttpOptions` (address, TLS, read timeout, body limit, concurrency) and `serve`,
  which runs an ASGI app until SIGTERM or Ctrl-C and lets requests in flight finish.
- `protocol`: uvicorn's h11 protocol with what it lacks: a deadline for reading each request
  (headers and body; a client sending slowly is cut off), the verified client certificate in
  the ASGI scope (`extensions["tls"]`, as the ASGI TLS extension has it), and a way for the
  application to drop a connection without an answer (the simulator's faults).
- `tls`: the server's TLS context (client certificates required and checked when a CA is
  given), with one-line errors naming the file and the reason.
- `request`: what an application reads from a request: `RequestContext` (who is calling: peer
  certificate subject and subjectAltName, address, headers), the body within a limit (413
  before reading when the declared length is over it), refusals sent without reading the body.
"""
