"""Spanish for what tools return in English: carrier notes, refund decisions, tool errors.

The tools (and the demo shop's data) speak English. A Spanish answer must not quote them, so
the engine says the same thing in Spanish from the structured facts a result carries (a refund's
``policy`` basis, an order's status) and from a short table of the demo data's carrier notes.
A note or an error it has no Spanish for is left out or said generically, never quoted in English.
"""

from __future__ import annotations

import re
from typing import Any

# The demo shop's carrier notes (assets/demo/orders.json ``status_detail``), in Spanish.
STATUS_DETAIL: dict[str, str] = {
    "Parcel has had no carrier scan for 8 days; the carrier opened a trace.": (
        "El paquete lleva 8 días sin ningún escaneo del transportista, que ha abierto una investigación."
    ),
    "Address could not be verified by the carrier; awaiting a corrected address.": (
        "El transportista no pudo verificar la dirección y espera una dirección corregida."
    ),
    "Held at customs in Frankfurt pending import paperwork.": (
        "Está retenido en la aduana de Fráncfort a la espera de los documentos de importación."
    ),
    "Carrier reported a weather delay at its regional hub; next scan expected within 48 hours.": (
        "El transportista informa de un retraso por el mal tiempo en su centro regional; el próximo escaneo "
        "se espera en 48 horas."
    ),
    "Carrier missed the first delivery attempt; redelivery scheduled.": (
        "El transportista no pudo hacer el primer intento de entrega; hay una nueva entrega programada."
    ),
}


def days(n: Any) -> str:
    """'1 día', '3 días'."""
    return f"{n} día" if str(n) == "1" else f"{n} días"


def refund_reason(basis: Any, order_id: str) -> str:
    """The refund policy's reason, in Spanish, from the ``policy`` facts of a request_refund result."""
    if not isinstance(basis, dict):
        return ""
    rule = basis.get("rule")
    if rule == "already_refunded":
        return f"El pedido #{order_id} ya se reembolsó el {basis.get('refunded_on')}."
    if rule == "cancelled":
        return (
            f"El pedido #{order_id} se canceló el {basis.get('cancelled_on')} y no se llegó a cobrar; cualquier "
            "autorización pendiente desaparece en unos días."
        )
    if rule == "not_shipped":
        return (
            f"El pedido #{order_id} aún no se ha enviado, así que no hay nada que reembolsar: puedes cancelarlo "
            "y se libera el pago completo."
        )
    if rule == "lost":
        return (
            f"El pedido #{order_id} lleva {days(basis.get('days_late'))} de retraso sobre la fecha prevista "
            f"({basis.get('eta')}) y se considera perdido; se reembolsa el importe completo."
        )
    if rule == "in_transit":
        late = basis.get("days_late") or 0
        return (
            f"El pedido #{order_id} sigue en camino (entrega prevista el {basis.get('eta')}"
            + (f", {days(late)} de retraso" if late else "")
            + f"). Si no ha llegado el {basis.get('eligible_on')}, se considera perdido y se reembolsa entero; "
            "una vez entregado, puedes devolverlo dentro del plazo de devolución."
        )
    if rule == "in_window":
        return (
            f"El pedido #{order_id} se entregó hace {days(basis.get('age_days'))}, dentro del plazo de "
            f"{basis.get('window_days')} días para reembolsos; se reembolsa el importe completo."
        )
    if rule == "outside_window":
        return (
            f"El pedido #{order_id} se entregó el {basis.get('delivered_on')}, hace {days(basis.get('age_days'))}, "
            f"fuera del plazo de {basis.get('window_days')} días. Si algún artículo es defectuoso, la garantía de "
            f"{basis.get('warranty_months')} meses lo sigue cubriendo."
        )
    return ""


_NO_ORDER = re.compile(r"No order #(\d{1,20}) found")
_NO_CUSTOMER = re.compile(r"No customer found with (email|id) (\S{1,254})")


def tool_error(tool: str, error: str) -> str:
    """A tool's English error, said in Spanish (generically when it is not one we know)."""
    if m := _NO_ORDER.search(error[:500]):
        return f"No encuentro ningún pedido #{m.group(1)}; revisa el número en el correo de confirmación."
    if m := _NO_CUSTOMER.search(error[:500]):
        what = "ese correo" if m.group(1) == "email" else "ese identificador"
        return f"No encuentro ningún cliente con {what} ({m.group(2).rstrip(';')})."
    what = {
        "check_order_status": "consultar el pedido",
        "request_refund": "tramitar el reembolso",
        "lookup_customer": "encontrar tu cuenta",
        "search_knowledge_base": "buscar en el centro de ayuda",
        "escalate_to_human": "pasarte con una persona",
    }.get(tool, "completar esa consulta")
    return f"No he podido {what}: el sistema devolvió un error."
