"""Orders in a queue, daemons processing them, a callback on each.

An e-commerce site does not process a large order while the customer waits: it
puts the order in a queue.  Daemon workers take orders from the queue and
process them (inventory, payment, shipping), and a callback on each completion
notifies the customer.  One order fails (its card is declined); the rest carry on.

Run it with ``python docs/examples/orders_daemon.py`` (asyncio) or
``python docs/examples/orders_daemon.py trio``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import partial

import anyio

import duetime


@dataclass(frozen=True)
class Order:
    id: int
    customer: str
    amount: float
    card: str = "ok"


class PaymentDeclined(Exception):
    pass


async def process_order(order: Order) -> str:
    """The daemon's work for one order: reserve stock, charge, ship."""
    await anyio.sleep(0.05)  # inventory
    if order.card == "declined":
        raise PaymentDeclined(f"order {order.id}: card declined")
    await anyio.sleep(0.1)  # payment and shipping label
    return f"shipped order {order.id} ({order.amount:.2f} EUR)"


def notify_customer(order: Order, outbox: list[str], handle: duetime.Handle[str]) -> None:
    """The completion callback: runs once per order, whatever its outcome."""
    if handle.status is duetime.Status.COMPLETED:
        outbox.append(f"to {order.customer}: {handle.return_value}")
    else:
        outbox.append(f"to {order.customer}: sorry, {handle.exception}")


def incoming_orders() -> list[Order]:
    orders = [Order(i, f"customer-{i}", 10.0 * i) for i in range(1, 11)]
    orders[3] = Order(4, "customer-4", 40.0, card="declined")
    return orders


# --8<-- [start:daemon]
async def main() -> tuple[list[str], duetime.PoolStatistics]:
    outbox: list[str] = []
    # Three daemons; at most five orders wait in the queue (backpressure on
    # the web tier).  Leaving the block is the sentinel: the queue is drained,
    # then the daemons exit.
    async with duetime.WorkerPool(process_order, workers=3, maxsize=5) as daemons:
        for order in incoming_orders():
            handle = await daemons.submit(order)
            handle.add_done_callback(partial(notify_customer, order, outbox))
    return outbox, daemons.statistics()


# --8<-- [end:daemon]


if __name__ == "__main__":
    backend = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    outbox, stats = anyio.run(main, backend=backend)
    for line in outbox:
        print(line)
    print(stats)
    assert (stats.completed, stats.failed) == (9, 1)
    assert len(outbox) == 10  # every customer was told, the declined one too
    print("orders daemon example passed")
