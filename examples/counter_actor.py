"""An actor handler written for a local disk, unchanged, keeping state in a mount.

Nothing here imports vfs_state: `vfs-state run --mount meta=./state -- python
examples/counter_actor.py` starts a sidecar for ./state and the shim routes
/state/meta/... to it. Each message bumps a JSON counter and appends to a log;
a small "model" file is created once and read back on every message.
"""
import json
import os
import sys

STATE = os.environ.get("ACTOR_STATE_DIR", "/state/meta")
COUNTER = os.path.join(STATE, "counter.json")
MODEL = os.path.join(STATE, "model", "weights.bin")


def load_counter() -> dict:
    try:
        with open(COUNTER) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"messages": 0, "last": None}


def ensure_model() -> bytes:
    if not os.path.exists(MODEL):
        os.makedirs(os.path.dirname(MODEL), exist_ok=True)
        with open(MODEL, "wb") as f:
            f.write(bytes(range(256)) * 16)  # a 4 KiB stand-in for real weights
    with open(MODEL, "rb") as f:
        return f.read()


def handle(message: str) -> dict:
    weights = ensure_model()
    state = load_counter()
    state["messages"] += 1
    state["last"] = message
    state["model_bytes"] = len(weights)
    with open(COUNTER, "w") as f:
        json.dump(state, f)
    with open(os.path.join(STATE, "log.txt"), "a") as log:
        log.write(f"{state['messages']}: {message}\n")
    return state


def main() -> int:
    messages = sys.argv[1:] or ["hello", "world", "again"]
    for message in messages:
        state = handle(message)
        print(f"handled {message!r}: {state['messages']} messages so far")
    print("files in", STATE, "->", sorted(os.listdir(STATE)))
    print("counter.json is", os.stat(COUNTER).st_size, "bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
