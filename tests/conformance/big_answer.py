"""How a real engine answers ``tasks.<service>.<network>`` when the answer passes 64 KB.

Too slow for the suite (hundreds of tasks); run by hand on the lab
(``.ci/swarm-setup``), for example::

    python -m tests.conformance.big_answer 20.10 450

It starts that many tasks of a service with a 63-character name on a network
with a 63-character name, asks from a task on that network over TCP and over
UDP with EDNS (4096), and prints what came back; then removes all it made.
"""

from __future__ import annotations

import sys
import time

from .drivers import IMAGE, SwarmDriver, listed_engines

NAME = "s" * 63
NETWORK = "n" * 63


def main(version: str, replicas: int) -> None:
    """Measure one engine, listed by .ci/swarm-setup."""
    (engine,) = [e for e in listed_engines() if e.version == version]
    driver = SwarmDriver(engine)
    types = driver._docker.types
    network = driver.client.networks.create(
        NETWORK,
        driver="overlay",
        attachable=True,
        ipam=types.IPAMConfig(pool_configs=[types.IPAMPool(subnet="10.99.0.0/21")]),
    )
    try:
        for name, count in ((NAME, replicas), ("bigprobe", 1)):
            driver.client.services.create(
                IMAGE,
                ["sleep", "1000000"],
                name=name,
                networks=[NETWORK],
                mode=types.ServiceMode("replicated", replicas=count),
                stop_grace_period=1_000_000_000,
            )
            driver._created.append(name)
            driver.converge(name, count)
        (probe,) = driver.client.containers.list(
            filters={"label": "com.docker.swarm.service.name=bigprobe"}
        )
        task = (probe.attrs["State"]["Pid"], probe.attrs["ResolvConfPath"])
        time.sleep(3)  # the last tasks' records reach the probe's DNS
        question = f"tasks.{NAME}.{NETWORK}"
        for transport, kwargs in (("TCP", {"tcp": True, "edns": False}), ("UDP", {})):
            request = {"op": "query", "args": [question], "kwargs": {**kwargs, "timeout": 10}}
            (response,) = driver._probe([request], task)
            answer = response["ok"]
            print(
                f"{version} over {transport}: {answer['rcode']}, {len(answer['records'])}"
                f" of {replicas} records, flags {' '.join(answer['flags'])}"
            )
    finally:
        driver.stop()
        network.remove()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
