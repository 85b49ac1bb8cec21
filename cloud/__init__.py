"""The cloud worker: answers escalations and direct requests from Kafka with a large(r) model.

`core/` holds the pure decisions (reply building, deadlines, dedup); the FastStream adapter lives in
`worker.py`, the engine adapter in `responder.py`, and `app.py` wires them from `CloudSettings`.
"""
