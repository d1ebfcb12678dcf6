"""Declarations written as XML: a planned declaration (bridge.testkit.declaration_plans) as a
WCO DEC-DMS export declaration of the real shape (the MetaData envelope of
urn:wco:datamodel:WCO:DocumentMetaData-DMS:2 around a Declaration of
urn:wco:datamodel:WCO:DEC-DMS:2, element order as the DMS schema has it), about 20 KB with several
goods items, each with dual-use documents whose write-offs quote the licences given and ordinary
documents beside them, or about 1 KB with one write-off; and the cancellation request that
invalidates one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from decimal import Decimal
from xml.sax.saxutils import escape, quoteattr

from bridge.core.declaration import DEC_NS, METADATA_NS
from bridge.core.model import Licence
from bridge.testkit.declaration_plans import DeclarationPlan, GoodsItemPlan, plan_declarations
from bridge.testkit.licences import plain


def _el(out: list[str], indent: str, tag: str, text: str | None, **attributes: str) -> None:
    if text is None:
        return
    attrs = "".join(f" {name}={quoteattr(value)}" for name, value in attributes.items() if value)
    out.append(f"{indent}<{tag}{attrs}>{escape(text)}</{tag}>")


def render_declaration(plan: DeclarationPlan) -> bytes:
    """The declaration of `plan` as WCO DEC-DMS XML in its MetaData envelope, indented like the
    published samples, in the DMS schema's element order (the ~1 KB form for a minimal plan)."""
    minimal = plan.minimal
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<md:MetaData xmlns:md="{METADATA_NS}" xmlns="{DEC_NS}">',
    ]
    i1, i2, i3, i4, i5, i6 = ("\t" * n for n in range(1, 7))
    if not minimal:
        _el(out, i1, "md:WCODataModelVersionCode", "3.6")
        _el(out, i1, "md:WCOTypeName", "DEC")
    _el(out, i1, "md:ResponsibleCountryCode", plan.country)
    if not minimal:
        _el(out, i1, "md:ResponsibleAgencyName", "Customs")
        _el(out, i1, "md:AgencyAssignedCustomizationVersionCode", "v2.1")
    out.append(f"{i1}<Declaration>")
    # An amendment is an additional message (FunctionCode 13, TypeCode COR), resent whole.
    _el(out, i2, "FunctionCode", "13" if plan.amended else "9")
    _el(out, i2, "FunctionalReferenceID", plan.lrn)
    _el(out, i2, "ID", plan.mrn)
    _el(out, i2, "TypeCode", "COR" if plan.amended else plan.type_code)
    if not minimal:
        total = sum((it.statistical_value for it in plan.goods_items), Decimal(0))
        _el(out, i2, "GoodsItemQuantity", str(len(plan.goods_items)))
        _el(out, i2, "InvoiceAmount", format(total, "f"), currencyID=plan.currency)
        _el(out, i2, "TotalPackageQuantity", str(len(plan.goods_items)))
        out += [
            f"{i2}<Agent>",
            f"{i3}<ID>{plan.declarant_eori}</ID>",
            f"{i3}<FunctionCode>2</FunctionCode>",
            f"{i2}</Agent>",
        ]
        if plan.amended:
            out.append(f"{i2}<Amendment>")
            _el(out, i3, "ChangeReasonCode", "32")
            out.append(f"{i2}</Amendment>")
        out += [
            f"{i2}<AuthorisationHolder>",
            f"{i3}<ID>{plan.declarant_eori}</ID>",
            f"{i3}<CategoryCode>EXRR</CategoryCode>",
            f"{i2}</AuthorisationHolder>",
        ]
        out += [
            f"{i2}<BorderTransportMeans>",
            f"{i3}<ID>MSCCARGOVESSEL</ID>",
            f"{i3}<IdentificationTypeCode>11</IdentificationTypeCode>",
            f"{i3}<RegistrationNationalityCode>{plan.country}</RegistrationNationalityCode>",
            f"{i3}<ModeCode>1</ModeCode>",
            f"{i2}</BorderTransportMeans>",
        ]
        out += [f"{i2}<Declarant>", f"{i3}<ID>{plan.declarant_eori}</ID>", f"{i2}</Declarant>"]
        out += [f"{i2}<ExitOffice>", f"{i3}<ID>{plan.country}000051</ID>", f"{i2}</ExitOffice>"]
    out += [f"{i2}<Exporter>", f"{i3}<ID>{plan.exporter_eori}</ID>", f"{i2}</Exporter>"]
    out.append(f"{i2}<GoodsShipment>")
    if not minimal:
        first = plan.goods_items[0].destination if plan.goods_items else "US"
        out += [
            f"{i3}<Consignee>",
            f"{i4}<Name>Consignee in {first}</Name>",
            f"{i4}<Address>",
            f"{i5}<CityName>Port City</CityName>",
            f"{i5}<CountryCode>{first}</CountryCode>",
            f"{i5}<Line>1 Harbour Road</Line>",
            f"{i5}<PostcodeID>PC1 234</PostcodeID>",
            f"{i4}</Address>",
            f"{i3}</Consignee>",
        ]
        out += [
            f"{i3}<Consignment>",
            f"{i4}<ContainerCode>1</ContainerCode>",
            f"{i4}<GoodsLocation>",
            f"{i5}<Name>PORTLOCATION1</Name>",
            f"{i5}<TypeCode>A</TypeCode>",
            f"{i5}<Address>",
            f"{i6}<TypeCode>U</TypeCode>",
            f"{i6}<CountryCode>{plan.country}</CountryCode>",
            f"{i5}</Address>",
            f"{i4}</GoodsLocation>",
            f"{i3}</Consignment>",
        ]
        out += [f"{i3}<ExportCountry>", f"{i4}<ID>{plan.country}</ID>", f"{i3}</ExportCountry>"]
    for item in plan.goods_items:
        _goods_item(out, item, plan, minimal)
    if not minimal:
        out += [
            f"{i3}<PreviousDocument>",
            f"{i4}<CategoryCode>Z</CategoryCode>",
            f"{i4}<ID>{plan.lrn}-DUCR</ID>",
            f"{i4}<TypeCode>DCR</TypeCode>",
            f"{i3}</PreviousDocument>",
        ]
    out += [f"{i2}</GoodsShipment>", f"{i1}</Declaration>", "</md:MetaData>", ""]
    return "\n".join(out).encode("utf-8")


def _goods_item(out: list[str], item: GoodsItemPlan, plan: DeclarationPlan, minimal: bool) -> None:
    i3, i4, i5, i6, i7 = ("\t" * n for n in range(3, 8))
    out.append(f"{i3}<GovernmentAgencyGoodsItem>")
    _el(out, i4, "SequenceNumeric", str(item.sequence))
    if not minimal:
        value = format(item.statistical_value, "f")
        _el(out, i4, "StatisticalValueAmount", value, currencyID=plan.currency)
        _el(out, i4, "TransactionNatureCode", "1")
    for document in item.documents:
        out.append(f"{i4}<AdditionalDocument>")
        _el(out, i5, "CategoryCode", document.category)
        _el(out, i5, "ID", document.reference)
        if not minimal:
            _el(out, i5, "Name", document.name)
        _el(out, i5, "TypeCode", document.type_code)
        _el(out, i5, "LPCOExemptionCode", document.status)
        if document.quantity is not None or document.amount is not None:
            out.append(f"{i5}<WriteOff>")
            _el(out, i6, "QuantityQuantity", document.quantity, unitCode=document.unit or "")
            _el(out, i6, "AmountAmount", document.amount, currencyID=document.currency or "")
            out.append(f"{i5}</WriteOff>")
        out.append(f"{i4}</AdditionalDocument>")
    out.append(f"{i4}<Commodity>")
    if not minimal:
        _el(out, i5, "Description", item.description)
    out += [
        f"{i5}<Classification>",
        f"{i6}<ID>{item.cn}</ID>",
        f"{i6}<IdentificationTypeCode>TSP</IdentificationTypeCode>",
        f"{i5}</Classification>",
    ]
    if not minimal:
        out += [
            f"{i5}<Classification>",
            f"{i6}<ID>{item.cn[-4:]}</ID>",
            f"{i6}<IdentificationTypeCode>TRA</IdentificationTypeCode>",
            f"{i5}</Classification>",
            f"{i5}<GoodsMeasure>",
            f"{i6}<GrossMassMeasure>{format(item.gross_mass, 'f')}</GrossMassMeasure>",
            f"{i6}<NetNetWeightMeasure>{format(plain(item.gross_mass * Decimal('0.8')), 'f')}"
            "</NetNetWeightMeasure>",
            f"{i5}</GoodsMeasure>",
        ]
    out.append(f"{i4}</Commodity>")
    out += [
        f"{i4}<Destination>",
        f"{i5}<CountryCode>{item.destination}</CountryCode>",
        f"{i4}</Destination>",
    ]
    if not minimal:
        out += [
            f"{i4}<GovernmentProcedure>",
            f"{i5}<CurrentCode>10</CurrentCode>",
            f"{i5}<PreviousCode>40</PreviousCode>",
            f"{i4}</GovernmentProcedure>",
            f"{i4}<GovernmentProcedure>",
            f"{i5}<CurrentCode>000</CurrentCode>",
            f"{i4}</GovernmentProcedure>",
            f"{i4}<Packaging>",
            f"{i5}<SequenceNumeric>1</SequenceNumeric>",
            f"{i5}<MarksNumbersID>ELB-{plan.lrn}-{item.sequence}</MarksNumbersID>",
            f"{i5}<QuantityQuantity>1</QuantityQuantity>",
            f"{i5}<TypeCode>4C</TypeCode>",
            f"{i4}</Packaging>",
            f"{i4}<PreviousDocument>",
            f"{i5}<CategoryCode>Z</CategoryCode>",
            f"{i5}<ID>{plan.lrn}-{item.sequence}</ID>",
            f"{i5}<TypeCode>ZZZ</TypeCode>",
            f"{i5}<LineNumeric>{item.sequence}</LineNumeric>",
            f"{i4}</PreviousDocument>",
        ]
    _ = i7
    out.append(f"{i3}</GovernmentAgencyGoodsItem>")


def cancellation_xml(mrn: str, *, country: str, lrn: str, submitter: str) -> bytes:
    """A cancellation request (FunctionCode 13, TypeCode INV) for the declaration `mrn`."""
    return "\n".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<md:MetaData xmlns:md="{METADATA_NS}" xmlns="{DEC_NS}">',
            "\t<md:WCODataModelVersionCode>3.6</md:WCODataModelVersionCode>",
            "\t<md:WCOTypeName>DEC</md:WCOTypeName>",
            f"\t<md:ResponsibleCountryCode>{country}</md:ResponsibleCountryCode>",
            "\t<Declaration>",
            "\t\t<FunctionCode>13</FunctionCode>",
            f"\t\t<FunctionalReferenceID>{escape(lrn)}</FunctionalReferenceID>",
            f"\t\t<ID>{mrn}</ID>",
            "\t\t<TypeCode>INV</TypeCode>",
            f"\t\t<Submitter>\n\t\t\t<ID>{submitter}</ID>\n\t\t</Submitter>",
            "\t\t<AdditionalInformation>",
            "\t\t\t<StatementDescription>Goods not exported</StatementDescription>",
            "\t\t\t<StatementTypeCode>AES</StatementTypeCode>",
            "\t\t</AdditionalInformation>",
            "\t\t<Amendment>\n\t\t\t<ChangeReasonCode>1</ChangeReasonCode>\n\t\t</Amendment>",
            "\t</Declaration>",
            "</md:MetaData>",
            "",
        ]
    ).encode("utf-8")


def declaration_xml(
    licences: Iterable[Licence],
    *,
    seed: int,
    mrn: str | None = None,
    minimal: bool = False,
    goods_items: tuple[int, int] = (7, 9),
) -> bytes:
    """One WCO DEC-DMS export declaration quoting `licences` (see the module docstring): about
    20 KB, or about 1 KB with `minimal`. Use `plan_declarations` for many, with their
    ground-truth write-offs."""
    plan = next(plan_declarations(licences, 1, seed=seed, minimal=minimal, goods_items=goods_items))
    if mrn is not None:
        plan = replace(plan, mrn=mrn)
    return render_declaration(plan)
