"""Synthetic licences written in the national formats that mappings/*.yaml read: the BAFA CSV
export, the licensing REST API's JSON (ECJU) and the eLicensing XML export."""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal
from xml.sax.saxutils import escape

from bridge.core.model import Licence, LicenceType, Party

_BAFA_TYPES = {
    LicenceType.INDIVIDUAL: "Einzelausfuhrgenehmigung",
    LicenceType.GLOBAL: "Höchstbetragsgenehmigung",
    LicenceType.NATIONAL_GENERAL: "Allgemeine Genehmigung",
    LicenceType.UNION_GENERAL: "Allgemeine Genehmigung der Union",
}
_BAFA_UNITS = {"NAR": "Stück", "KGM": "kg", "GRM": "g", "TNE": "t", "LTR": "l", "MTR": "m"}
_BAFA_UNITS |= {"MTK": "m²"}
_BAFA_COLUMNS = (
    "Genehmigungsnummer;Genehmigungsart;Status;Gültig ab;Gültig bis;Ausführer;EORI-Nummer;"
    "AGG-Nummer;Pos.;AL-Nummer;Warennummer;Warenbezeichnung;Menge;Maßeinheit;Wert;Währung;"
    "Bestimmungsländer;Empfänger;Empfängerland;Endverwender;Endverwenderland"
)


def _german_number(value: Decimal | None) -> str:
    if value is None:
        return ""
    whole, _, fraction = format(value, "f").partition(".")
    grouped = f"{int(whole):,}".replace(",", ".")
    return f"{grouped},{fraction}" if fraction else grouped


def _csv_field(text: str) -> str:
    if any(c in text for c in ';"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def bafa_csv(licences: Iterable[Licence]) -> bytes:
    """The licences as the German legacy CSV (mappings/de_bafa_legacy.yaml): Latin-1, one row
    per line. Only German licences fit (the mapping fixes the issuing authority)."""
    rows = [_BAFA_COLUMNS]
    for licence in licences:
        if licence.issuing_member_state != "DE":
            raise ValueError(f"licence {licence.number}: the BAFA format carries DE licences")
        for line in licence.lines:
            cells = [
                licence.number,
                _BAFA_TYPES[licence.type],
                "gültig",
                licence.valid_from.strftime("%d.%m.%Y"),
                licence.valid_to.strftime("%d.%m.%Y") if licence.valid_to else "",
                licence.holder_name,
                licence.holder_eori,
                licence.general_authorisation or "",
                str(line.line_number),
                line.control_list_entry,
                f"{line.cn_code[:4]} {line.cn_code[4:6]} {line.cn_code[6:]}"
                if line.cn_code
                else "",
                line.description,
                _german_number(line.quantity),
                _BAFA_UNITS[line.unit] if line.unit else "",
                _german_number(line.value),
                line.currency or "",
                ",".join(line.destinations),
                line.consignee.name if line.consignee else "",
                (line.consignee.country or "") if line.consignee else "",
                line.end_user.name if line.end_user else "",
                (line.end_user.country or "") if line.end_user else "",
            ]
            rows.append(";".join(_csv_field(cell) for cell in cells))
    return ("\n".join(rows) + "\n").encode("latin-1")


_ECJU_TYPES = {
    LicenceType.INDIVIDUAL: "SIEL",
    LicenceType.GLOBAL: "OIEL",
    LicenceType.NATIONAL_GENERAL: "OGEL",
}


def ecju_json(licences: Iterable[Licence]) -> bytes:
    """The licences as the licensing REST API export (mappings/gb_ecju_api.yaml). It has no
    Union general authorisations."""

    def party(p: Party | None) -> dict | None:
        if p is None:
            return None
        found = {"name": p.name, "country": p.country}
        if p.address:
            found["address"] = p.address
        return found

    records = []
    for licence in licences:
        if licence.type not in _ECJU_TYPES:
            raise ValueError(f"licence {licence.number}: the API export has no {licence.type}")
        goods = []
        for line in licence.lines:
            item: dict = {
                "lineNo": line.line_number,
                "controlEntry": line.control_list_entry,
                "commodityCode": line.cn_code,
                "description": line.description,
            }
            if line.quantity is not None or line.unit:
                item["quantity"] = {
                    "amount": None if line.quantity is None else str(line.quantity),
                    "unit": line.unit,
                }
            if line.value is not None or line.currency:
                item["value"] = {
                    "amount": None if line.value is None else str(line.value),
                    "currency": line.currency,
                }
            item["destinations"] = list(line.destinations)
            if line.consignee:
                item["consignee"] = party(line.consignee)
            if line.end_user:
                item["endUser"] = party(line.end_user)
            goods.append(item)
        records.append(
            {
                "reference": licence.number,
                "revision": licence.version,
                "licenceType": _ECJU_TYPES[licence.type],
                "status": "Issued",
                "issuer": {
                    "country": licence.issuing_member_state,
                    "name": licence.issuing_authority,
                },
                "validity": {
                    "from": licence.valid_from.isoformat(),
                    "to": licence.valid_to.isoformat() if licence.valid_to else None,
                },
                "licensee": {"name": licence.holder_name, "eori": licence.holder_eori},
                "generalAuthorisation": licence.general_authorisation,
                "goods": goods,
            }
        )
    document = {"export": {"system": "LITE", "count": len(records)}, "licences": records}
    return json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8")


ELICENSING_NS = "urn:eu:ec:trade:dual-use:elicensing:export:1"


def elicensing_xml(licences: Iterable[Licence]) -> bytes:
    """The licences as the EU e-licensing tool's XML export (mappings/eu_elicensing_tool.yaml)."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<elic:LicenceExport xmlns:elic="{ELICENSING_NS}" system="synthetic">',
    ]
    for licence in licences:
        out.append(f'  <elic:Authorisation version="{licence.version}">')
        out.append(f"    <elic:Reference>{escape(licence.number)}</elic:Reference>")
        out.append(f"    <elic:Kind>{licence.type.value.upper()}</elic:Kind>")
        out.append("    <elic:State>ISSUED</elic:State>")
        out.append(
            f"    <elic:IssuingMemberState>{licence.issuing_member_state}</elic:IssuingMemberState>"
        )
        authority = escape(licence.issuing_authority)
        out.append(f"    <elic:CompetentAuthority>{authority}</elic:CompetentAuthority>")
        until = f' to="{licence.valid_to.isoformat()}"' if licence.valid_to else ""
        out.append(f'    <elic:Validity from="{licence.valid_from.isoformat()}"{until}/>')
        out.append(
            f"    <elic:Exporter><elic:Name>{escape(licence.holder_name)}</elic:Name>"
            f"<elic:EORI>{licence.holder_eori}</elic:EORI></elic:Exporter>"
        )
        if licence.general_authorisation:
            out.append(
                f"    <elic:GeneralAuthorisation>{licence.general_authorisation}"
                "</elic:GeneralAuthorisation>"
            )
        out.append("    <elic:Items>")
        for line in licence.lines:
            out.append(f'      <elic:Item sequence="{line.line_number}">')
            out.append(
                f"        <elic:ControlListEntry>{line.control_list_entry}</elic:ControlListEntry>"
            )
            if line.cn_code:
                out.append(f"        <elic:CommodityCode>{line.cn_code}</elic:CommodityCode>")
            out.append(f"        <elic:Description>{escape(line.description)}</elic:Description>")
            if line.quantity is not None:
                out.append(
                    f'        <elic:Quantity unit="{line.unit}">{line.quantity}</elic:Quantity>'
                )
            elif line.unit:
                out.append(f'        <elic:Quantity unit="{line.unit}"/>')
            if line.value is not None:
                out.append(
                    f'        <elic:Value currency="{line.currency}">{line.value}</elic:Value>'
                )
            elif line.currency:
                out.append(f'        <elic:Value currency="{line.currency}"/>')
            if line.destinations:
                countries = "".join(f"<elic:Country>{c}</elic:Country>" for c in line.destinations)
                out.append(f"        <elic:Destinations>{countries}</elic:Destinations>")
            for tag, party in (("Consignee", line.consignee), ("EndUser", line.end_user)):
                if party is not None:
                    out.append(
                        f'        <elic:{tag} country="{party.country}">'
                        f"<elic:Name>{escape(party.name)}</elic:Name></elic:{tag}>"
                    )
            out.append("      </elic:Item>")
        out.append("    </elic:Items>")
        out.append("  </elic:Authorisation>")
    out.append("</elic:LicenceExport>\n")
    return "\n".join(out).encode("utf-8")


def national_files(licences: Iterable[Licence]) -> dict[str, bytes]:
    """The licences split by where they come from, each group in its national format, under
    file names the mappings claim: German ones as BAFA CSV, British ones as the API export's
    JSON, the rest as the EU tool's XML."""
    german, british, others = [], [], []
    for licence in licences:
        {"DE": german, "GB": british}.get(licence.issuing_member_state, others).append(licence)
    files = {}
    if german:
        files["bafa_ausfuhr_synthetic.csv"] = bafa_csv(german)
    if british:
        files["ecju_licences_synthetic.json"] = ecju_json(british)
    if others:
        files["elicensing_export_synthetic.xml"] = elicensing_xml(others)
    return files
