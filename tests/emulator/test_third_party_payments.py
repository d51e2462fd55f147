"""python-quickbooks' Payment object (save, void, delete) against the emulator."""

from __future__ import annotations

from decimal import Decimal

from quickbooks import QuickBooks
from quickbooks.objects.base import LinkedTxn
from quickbooks.objects.payment import Payment, PaymentLine

from qbsync.emulator.server import EmulatorServer

from .helpers import SERVICE_ITEM, line
from .test_third_party import _connect, server  # noqa: F401  (fixture)


def test_python_quickbooks_payment(server: EmulatorServer) -> None:  # noqa: F811
    emu = server.emulator
    realm = emu.create_company("PyPay", custom_txn_numbers=True)
    c = emu.create_entity(realm, "Customer", {"DisplayName": "Πελάτης"})
    it = emu.create_entity(realm, "Item", {"Name": "Goods", **SERVICE_ITEM})
    inv = emu.create_entity(
        realm, "Invoice", {"CustomerRef": {"value": c["Id"]}, "Line": [line(it["Id"], 1, 100)]}
    )
    auth = _connect(server)
    qb = QuickBooks(
        auth_client=auth, refresh_token=auth.refresh_token, company_id=realm, minorversion=75
    )
    payment = Payment()
    payment.CustomerRef = {"value": c["Id"]}  # type: ignore[assignment]
    payment.TotalAmt = Decimal("50.00")
    payment.PaymentRefNum = "PY-77"
    pl = PaymentLine()
    pl.Amount = Decimal("50.00")
    link = LinkedTxn()
    link.TxnId = inv["Id"]
    link.TxnType = "Invoice"
    pl.LinkedTxn.append(link)
    payment.Line.append(pl)
    payment = payment.save(qb=qb)
    assert payment.Id == "1"
    assert payment.UnappliedAmt == 0
    assert payment.Line[0].LinkedTxn[0].TxnId == inv["Id"]
    assert emu.get_entity(realm, "Invoice", inv["Id"])["Balance"] == 74  # type: ignore[index]

    payment.PrivateNote = "full update via save()"
    payment = payment.save(qb=qb)
    assert payment.SyncToken == "1"
    assert [p.Id for p in Payment.filter(CustomerRef=c["Id"], qb=qb)] == ["1"]

    payment.void(qb=qb)  # python-quickbooks: sparse update with include=void
    voided = Payment.get(payment.Id, qb=qb)
    assert voided.TotalAmt == 0
    assert "Voided" in voided.PrivateNote
    assert emu.get_entity(realm, "Invoice", inv["Id"])["Balance"] == 124  # type: ignore[index]
    voided.delete(qb=qb)
    assert emu.get_entity(realm, "Payment", payment.Id) is None
