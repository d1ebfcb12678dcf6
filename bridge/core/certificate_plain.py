"""The certificate's text written in one go, for the licences whose every value can be written
as it is (bridge.core.certificate writes, escapes and checks value by value otherwise)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal

from bridge.core.model import ANNEX_I_LIST, Licence, LicenceLine


def decimal_text(amount: Decimal) -> str:
    """An amount as xs:decimal writes it."""
    # Fixed-point notation: "1E+2" is a valid Decimal but not a valid xs:decimal.
    return format(amount, "f")


def date_text(day: date | None) -> str:
    """A day as xs:date writes it ("" for none)."""
    return "" if day is None else day.isoformat()  # an empty date is reported by the XSD


# A character a value cannot be written with as it is: escaped (&, <, > and CR in text; &, <, ",
# tab, LF and CR in an attribute), or not XML 1.0 at all (reported). A value with one goes
# through the certificate's value-by-value writer.
_NOT_XML = "[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
_TEXT_CARE = re.compile(f"[&<>\r]|{_NOT_XML}")
_ATTRIBUTE_CARE = re.compile(f'[&<"\t\n\r]|{_NOT_XML}')


def plain_certificate(
    licence: Licence, code: str, namespace: str, schema_version: str
) -> str | None:
    """The certificate text bridge.core.certificate's _Writer writes for `licence` (with
    document code `code`), written in one go for the common case in which no value needs
    escaping or is refused; None when one does (then the writer, which escapes and reports,
    decides). The same text as the writer's: tests compare them."""
    written: list[str] = []
    keep = written.append
    attributes: list[str] = []

    def text(value: object) -> str:
        shown = value if value.__class__ is str else str(value)
        keep(shown)
        return shown

    def attribute(value: object) -> str:
        shown = value if value.__class__ is str else str(value)
        attributes.append(shown)
        return shown

    out = [
        f'<Certificate xmlns="{namespace}" schemaVersion="{schema_version}">'
        f"\n  <DocumentCode>{text(code)}</DocumentCode>"
        f"\n  <Reference>{text(licence.number)}</Reference>"
        f"\n  <Version>{text(licence.version)}</Version>"
        f"\n  <Status>{text(getattr(licence.status, 'value', licence.status))}</Status>"
        "\n  <IssuingAuthority>"
        f"\n    <MemberState>{text(licence.issuing_member_state)}</MemberState>"
        f"\n    <Name>{text(licence.issuing_authority)}</Name>"
        "\n  </IssuingAuthority>\n  <Holder>"
        f"\n    <Name>{text(licence.holder_name)}</Name>"
        f"\n    <EORI>{text(licence.holder_eori)}</EORI>"
        "\n  </Holder>\n  <Validity>"
        f"\n    <From>{text(date_text(licence.valid_from))}</From>"
    ]
    add = out.append
    if licence.valid_to is not None:
        add(f"\n    <To>{text(date_text(licence.valid_to))}</To>")
    add("\n  </Validity>")
    if licence.general_authorisation is not None:
        add(
            f"\n  <GeneralAuthorisation>{text(licence.general_authorisation)}"
            "</GeneralAuthorisation>"
        )
    for line in licence.lines:
        add(f"\n  <Line>\n    <LineNumber>{text(line.line_number)}</LineNumber>")
        entry = text(line.control_list_entry)
        if line.control_list == ANNEX_I_LIST or line.control_list is None:
            add(f"\n    <ControlListEntry>{entry}</ControlListEntry>")
        else:
            add(
                f'\n    <ControlListEntry list="{attribute(line.control_list)}">{entry}'
                "</ControlListEntry>"
            )
        if line.cn_code is not None:
            add(f"\n    <CNCode>{text(line.cn_code)}</CNCode>")
        add(f"\n    <Description>{text(line.description)}</Description>")
        _plain_measures(add, text, attribute, "    ", line)
        for country in line.destinations:
            add(f"\n    <DestinationCountry>{text(country)}</DestinationCountry>")
        for name, party in (("Consignee", line.consignee), ("EndUser", line.end_user)):
            if party is not None:
                add(f"\n    <{name}>\n      <Name>{text(party.name)}</Name>")
                if party.country is not None:
                    add(f"\n      <Country>{text(party.country)}</Country>")
                if party.address is not None:
                    add(f"\n      <Address>{text(party.address)}</Address>")
                add(f"\n    </{name}>")
        add("\n  </Line>")
    if not licence.lines:
        add("\n  <OpenScope>")
        for entry in licence.control_list_entries:
            add(f"\n    <ScopeEntry>{text(entry)}</ScopeEntry>")
        for country in licence.destinations:
            add(f"\n    <DestinationCountry>{text(country)}</DestinationCountry>")
        _plain_measures(add, text, attribute, "    ", licence)
        add("\n  </OpenScope>")
    add("\n</Certificate>")
    if _TEXT_CARE.search("".join(written)) or _ATTRIBUTE_CARE.search("".join(attributes)):
        return None
    return "".join(out)


def _plain_measures(
    add: Callable[[str], None],
    text: Callable[[object], str],
    attribute: Callable[[object], str],
    ind: str,
    figures: LicenceLine | Licence,
) -> None:
    """_measures for _plain_certificate."""
    if figures.quantity is not None:
        amount = text(decimal_text(figures.quantity))
        if figures.unit is None:
            add(f"\n{ind}<Quantity>{amount}</Quantity>")
        else:
            add(f'\n{ind}<Quantity unitCode="{attribute(figures.unit)}">{amount}</Quantity>')
    elif figures.unit is not None:
        add(f"\n{ind}<UsageUnit>{text(figures.unit)}</UsageUnit>")
    if figures.value is not None:
        amount = text(decimal_text(figures.value))
        if figures.currency is None:
            add(f"\n{ind}<Value>{amount}</Value>")
        else:
            add(f'\n{ind}<Value currencyID="{attribute(figures.currency)}">{amount}</Value>')
    elif figures.currency is not None:
        add(f"\n{ind}<UsageCurrency>{text(figures.currency)}</UsageCurrency>")
