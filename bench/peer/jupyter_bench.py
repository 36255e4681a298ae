#!/usr/bin/env python3
"""The peer, measured in the same run as ours: a local ipykernel driven by jupyter_client
over loopback. Prints one JSON object; times are in microseconds unless a key says ms.

Usage: python jupyter_bench.py [--quick]
"""
import json
import statistics
import sys
import time
from importlib.metadata import version
from queue import Empty

from jupyter_client import KernelManager

QUICK = "--quick" in sys.argv


def summary(samples_us):
    ordered = sorted(samples_us)
    p99 = ordered[min(len(ordered) - 1, round((len(ordered) - 1) * 0.99))]
    return {"n": len(ordered), "median_us": statistics.median(ordered), "p99_us": p99, "min_us": ordered[0]}


def start_kernel():
    started = time.perf_counter()
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel()
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=120)
    return manager, client, (time.perf_counter() - started) * 1e6


def stop_kernel(manager, client):
    client.stop_channels()
    manager.shutdown_kernel(now=True)


def run_until_idle(client, code, timeout=120):
    """Executes `code`; returns (seconds until idle, stdout text received)."""
    started = time.perf_counter()
    msg_id = client.execute(code, store_history=False)
    text = []
    while True:
        message = client.get_iopub_msg(timeout=timeout)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        kind = message["msg_type"]
        if kind == "stream":
            text.append(message["content"]["text"])
        elif kind == "status" and message["content"]["execution_state"] == "idle":
            return time.perf_counter() - started, "".join(text)


def drain(client, seconds):
    """Every iopub message available within `seconds` of quiet."""
    messages = []
    while True:
        try:
            messages.append(client.get_iopub_msg(timeout=seconds))
        except Empty:
            return messages


def flood(lines):
    return f"for i in range({lines}):\n    print(i, flush=True)"


def slow_consumer_through_jupyter_client(client, lines):
    """Reads iopub only after the execution finished, through jupyter_client. Its channel
    thread keeps reading the socket into an unbounded queue meanwhile, so this client is not
    slow where the kernel can see it."""
    msg_id = client.execute(flood(lines), store_history=False)
    client.get_shell_msg(timeout=120)  # the reply: execution finished; only now read outputs
    time.sleep(1.0)
    return slow_consumer_result(lines, msg_id, drain(client, 1.0),
                                "jupyter_client (a thread drains iopub meanwhile)")


def slow_consumer_result(lines, msg_id, messages, reader):
    """What a slow consumer got of the execution `msg_id`'s `lines` lines."""
    received, idle_seen = 0, False
    for message in messages:
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        if message["msg_type"] == "stream":
            received += message["content"]["text"].count("\n")
        elif message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            idle_seen = True
    return {"lines": lines, "received": received, "lost_percent": 100.0 * (lines - received) / lines,
            "idle_seen": idle_seen, "reader": reader}


def slow_consumer_reading_late(manager, client, lines):
    """A client that is really slow: its own zmq SUB socket on the kernel's iopub port with
    the default socket options (high-water marks of 1,000 messages), read only after the
    execution finished, as a UI that stalls or a client that polls would."""
    import zmq
    from jupyter_client.session import Session

    info = manager.get_connection_info()
    session = Session(key=info["key"], signature_scheme=info["signature_scheme"])
    context = zmq.Context.instance()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"{info['transport']}://{info['ip']}:{info['iopub_port']}")

    def messages(timeout_ms):
        while sub.poll(timeout_ms):
            _, frames = session.feed_identities(sub.recv_multipart())
            yield session.deserialize(frames)

    # The subscription is in place once this socket sees a message of an execution it waits for.
    while True:
        probe = client.execute("1", store_history=False)
        if any(m["parent_header"].get("msg_id") == probe for m in messages(200)):
            break
    list(messages(200))
    msg_id = client.execute(flood(lines), store_history=False)
    while client.get_shell_msg(timeout=120)["parent_header"].get("msg_id") != msg_id:
        pass
    time.sleep(1.0)
    result = slow_consumer_result(lines, msg_id, messages(1000),
                                  "a zmq SUB socket read late (default high-water marks)")
    sub.close(linger=0)
    return result


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def main():
    results = {"versions": {"ipykernel": version("ipykernel"), "jupyter_client": version("jupyter_client"),
                            "python": sys.version.split()[0]}}

    starts = []
    for _ in range(2 if QUICK else 5):
        manager, client, took = start_kernel()
        starts.append(took)
        stop_kernel(manager, client)
    results["start"] = summary(starts)

    manager, client, _ = start_kernel()
    drain(client, 0.5)
    pid = manager.provisioner.pid
    results["idle_rss_kib"] = rss_kib(pid)

    for _ in range(5 if QUICK else 50):  # warm up
        run_until_idle(client, "1")
    round_trips = [run_until_idle(client, "1")[0] * 1e6 for _ in range(30 if QUICK else 500)]
    results["execute_1_round_trip"] = summary(round_trips)

    lines = 1_000 if QUICK else 10_000
    took, text = run_until_idle(client, flood(lines))
    results["flood_flushed"] = {"lines": lines, "received": text.count("\n"), "total_us": took * 1e6,
                                "per_line_us": took * 1e6 / lines}

    slow_lines = 2_000 if QUICK else 20_000
    results["slow_consumer"] = slow_consumer_through_jupyter_client(client, slow_lines)
    drain(client, 0.5)
    results["slow_consumer_late_sub"] = slow_consumer_reading_late(manager, client, slow_lines)
    drain(client, 0.5)

    interrupts = []
    for _ in range(2 if QUICK else 10):
        # As a notebook runs a cell (JupyterLab and nbclient keep history), and as the agent's
        # Jupyter backend does in B14: after an interrupt the kernel records the failed cell.
        msg_id = client.execute("import time\ntime.sleep(30)", store_history=True)
        while True:  # wait until it runs
            message = client.get_iopub_msg(timeout=30)
            if message["parent_header"].get("msg_id") == msg_id and message["msg_type"] == "execute_input":
                break
        time.sleep(0.05)
        started = time.perf_counter()
        manager.interrupt_kernel()
        while True:
            message = client.get_iopub_msg(timeout=30)
            if (message["parent_header"].get("msg_id") == msg_id and message["msg_type"] == "status"
                    and message["content"]["execution_state"] == "idle"):
                interrupts.append((time.perf_counter() - started) * 1e6)
                break
    results["interrupt_to_idle"] = summary(interrupts)

    stop_kernel(manager, client)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
