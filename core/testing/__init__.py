"""In-memory fakes of the ports, for fast unit tests of the service and the worker.

``FakeRepository``, ``FakeJobQueue``, ``FakeReceipts`` and ``FakeUnitOfWork`` share one
``FakeState``; tests arrange it and assert on it directly. The fakes keep the contracts the real
implementations keep (``tests/contract`` runs one suite over both): a unit of work that isn't
committed leaves the state as it found it, and the queue hands jobs out in pgqueuer's order
(priority, then arrival).

One module per fake family: ``state`` (what the fakes share), ``repository``, ``queue`` (queue,
receipts and unit of work), ``chat`` (the recording chat sink)."""
