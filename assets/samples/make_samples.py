"""Regenerate the sample screenshot and log the example scenarios use (deterministic).

python assets/samples/make_samples.py
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent


def _font(size: int) -> ImageFont.ImageFont:
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


def screenshot(path: Path) -> None:
    """A checkout page with a payment error dialog, like a customer would capture."""
    im = Image.new("RGB", (1440, 900), "#f5f6fa")
    d = ImageDraw.Draw(im)
    d.rectangle([0, 0, 1440, 64], fill="#1f2937")
    d.text((32, 18), "ACME Store   ·   Checkout", fill="white", font=_font(24))
    d.rounded_rectangle([120, 110, 860, 820], 16, fill="white", outline="#e5e7eb")
    y = 140
    for label in (
        "Shipping address",
        "Delivery: Standard (3-5 days)",
        "Payment: Visa •••• 4242",
        "Order total: $129.00",
    ):
        d.text((160, y), label, fill="#111827", font=_font(22))
        d.line([160, y + 44, 820, y + 44], fill="#e5e7eb", width=2)
        y += 90
    d.rounded_rectangle([160, 700, 820, 770], 12, fill="#4f46e5")
    d.text((390, 718), "Place order", fill="white", font=_font(26))
    d.rounded_rectangle([900, 250, 1360, 560], 14, fill="white", outline="#dc2626", width=3)
    d.text((930, 280), "⚠ Payment failed", fill="#b91c1c", font=_font(28))
    for i, line in enumerate(
        (
            "Error PAY-402: card declined by issuer",
            "(do_not_honor). Reference:",
            "7f3a-91c2-checkout-eu-west",
            "Please try another card or contact",
            "support.",
        )
    ):
        d.text((930, 340 + i * 36), line, fill="#374151", font=_font(20))
    im.save(path, optimize=True)


def service_log(path: Path, lines: int = 3000) -> None:
    """A checkout-service log with a payment-gateway outage in the middle."""
    rnd = random.Random(48291)
    t = datetime(2026, 11, 26, 8, 0, 0)
    out = []
    for i in range(lines):
        t += timedelta(milliseconds=rnd.randint(50, 900))
        ts = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
        req = f"req-{rnd.getrandbits(32):08x}"
        outage = 1300 <= i <= 1750
        roll = rnd.random()
        if outage and roll < 0.35:
            out.append(
                f"{ts} ERROR [checkout-worker-{rnd.randint(1, 8)}] {req} PaymentGatewayClient: call to /v2/charges "
                "timed out after 30000ms (attempt 3/3)"
            )
            if roll < 0.05:
                out += [
                    "com.acme.payments.GatewayTimeoutException: upstream gateway-eu-west did not answer in 30000ms",
                    "\tat com.acme.payments.GatewayClient.charge(GatewayClient.java:214)",
                    "\tat com.acme.checkout.OrderService.placeOrder(OrderService.java:88)",
                    "\tat com.acme.checkout.api.CheckoutController.submit(CheckoutController.java:41)",
                ]
        elif outage and roll < 0.6:
            out.append(
                f"{ts} WARN  [checkout-worker-{rnd.randint(1, 8)}] {req} PaymentGatewayClient: retrying charge after "
                f"503 from gateway-eu-west (attempt {rnd.randint(1, 2)}/3)"
            )
        elif roll < 0.02:
            out.append(
                f"{ts} WARN  [cart-sync] {req} inventory cache miss for sku=SKU-{rnd.randint(1000, 9999)}, fetched "
                f"from db in {rnd.randint(40, 400)}ms"
            )
        elif roll < 0.025:
            out.append(
                f"{ts} ERROR [checkout-worker-{rnd.randint(1, 8)}] {req} CardValidator: card declined by issuer "
                f"(do_not_honor) order={rnd.randint(40000, 49999)}"
            )
        else:
            out.append(
                f"{ts} INFO  [checkout-worker-{rnd.randint(1, 8)}] {req} POST /api/checkout 200 in "
                f"{rnd.randint(80, 420)}ms user=u{rnd.randint(1000, 99999)} cart_items={rnd.randint(1, 6)}"
            )
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


if __name__ == "__main__":
    screenshot(HERE / "checkout-error.png")
    service_log(HERE / "checkout-service.log")
    print("wrote", *(p.name for p in HERE.iterdir() if p.suffix in (".png", ".log")))
