#!/usr/bin/env python3
"""Measure where the time of a rollout goes, against the real local Docker engine and an HAProxy
of this script's own on loopback.

A group of N replicas (default 10) of a busybox web server is rolled out to a second image with
`pilothouse rollout --max-surge 2 --max-unavailable 0 --backend ... --output json`, R times
(default 3, alternating between the two images). Each step's JSON line says how long it took,
how much of that was waiting for health checks, draining and stopping old replicas, and the
engine creating and starting new ones; what is left is Pilothouse's own work (observing the
replicas, deciding, talking to HAProxy, writing its state). The table shows the median and the
largest of each per step, and the whole rollout. A first step also makes sure HAProxy has every
running replica, so it is shown apart.

The images' HEALTHCHECK runs every second (Docker 20.10 runs the first check one interval after
the start), so a step cannot take less than about a second of health checks.

Containers carry the label pilothouse.bench=1 and are removed at the end. Images are built
locally from Debian's busybox-static (no registry needed); HAProxy is Debian's.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

BASE = "pilothouse-bench/busybox-full:1"
IMAGES = ["pilothouse-bench/web:a", "pilothouse-bench/web:b"]
LABEL = "pilothouse.bench=1"
BACKEND = "web"


def docker(*args, check=True, stdin=None):
    return subprocess.run(
        ["docker", *args], check=check, capture_output=True, text=True, input=stdin
    )


def ensure_images():
    if docker("image", "inspect", BASE, check=False).returncode != 0:
        busybox = shutil.which("busybox") or "/bin/busybox"
        applets = subprocess.run(
            [busybox, "--list"], check=True, capture_output=True, text=True
        ).stdout.split()
        with tempfile.TemporaryDirectory() as tmp:
            rootfs = os.path.join(tmp, "rootfs.tar")
            with tarfile.open(rootfs, "w") as tar:
                tar.add(busybox, arcname="bin/busybox")
                for applet in applets:
                    if applet == "busybox":
                        continue
                    link = tarfile.TarInfo("bin/" + applet)
                    link.type = tarfile.SYMTYPE
                    link.linkname = "busybox"
                    tar.addfile(link)
                tmpdir = tarfile.TarInfo("tmp")
                tmpdir.type = tarfile.DIRTYPE
                tmpdir.mode = 0o1777
                tar.addfile(tmpdir)
            docker("import", "--change", 'CMD ["/bin/sh"]', rootfs, BASE)
    for image in IMAGES:
        version = image.rsplit(":", 1)[1]
        dockerfile = (
            f"FROM {BASE}\n"
            f"RUN mkdir -p /www && echo {version} > /www/index.html\n"
            "HEALTHCHECK --interval=1s --timeout=1s --retries=2 "
            "CMD wget -q -O /dev/null http://127.0.0.1:8080/\n"
            "CMD [\"sh\", \"-c\", \"trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait\"]\n"
        )
        docker("build", "-q", "-t", image, "-", stdin=dockerfile)


def cleanup():
    ids = docker("ps", "-aq", "--filter", "label=" + LABEL).stdout.split()
    if ids:
        docker("rm", "-f", *ids)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_haproxy(tmp):
    sock = os.path.join(tmp, "admin.sock")
    config = os.path.join(tmp, "haproxy.cfg")
    with open(config, "w") as f:
        f.write(
            f"global\n    stats socket {sock} mode 600 level admin\n\n"
            "defaults\n    mode http\n    timeout connect 1s\n"
            "    timeout client 5s\n    timeout server 5s\n\n"
            f"frontend fe\n    bind 127.0.0.1:{free_port()}\n    default_backend {BACKEND}\n\n"
            f"backend {BACKEND}\n    balance roundrobin\n    option redispatch 1\n    retries 2\n"
        )
    proc = subprocess.Popen(
        ["haproxy", "-db", "-f", config],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        if os.path.exists(sock):
            return proc, sock
        time.sleep(0.05)
    proc.kill()
    sys.exit("haproxy did not open its socket")


def start_group(group, replicas):
    for n in range(1, replicas + 1):
        docker(
            "run", "-d", "--name", f"{group}-{n}",
            "--label", LABEL,
            "--label", f"pilothouse.group={group}",
            "--label", f"pilothouse.group.number={n}",
            "--stop-timeout", "2",
            IMAGES[0],
        )


def rollout(binary, env, group, image, sock):
    started = time.monotonic()
    out = subprocess.run(
        [
            binary, "rollout", group, "--image", image, "--wait",
            "--max-surge", "2", "--max-unavailable", "0",
            "--backend", f"{BACKEND}:8080", "--haproxy-socket", sock,
            "--docker-host", "unix:///var/run/docker.sock", "--output", "json",
        ],
        capture_output=True, text=True, env=env,
    )
    took = time.monotonic() - started
    if out.returncode != 0:
        sys.exit(f"the rollout exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    return took, [line for line in lines if line.get("event") == "step"]


def row(name, values):
    values = sorted(values)
    return f"{name:<34} {statistics.median(values):>9.0f} {values[-1]:>9.0f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default="target/release/pilothouse")
    parser.add_argument("--replicas", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} is missing: run `cargo build --release` first")
    ensure_images()
    cleanup()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        for var, sub in [("CONFIG", "config"), ("DATA", "data"), ("STATE", "state")]:
            env[f"PILOTHOUSE_{var}_DIR"] = os.path.join(tmp, sub)
        env.pop("DOCKER_HOST", None)
        haproxy, sock = start_haproxy(tmp)
        group = f"bench{os.getpid()}"
        try:
            start_group(group, args.replicas)
            time.sleep(3)
            totals, steps = [], []
            for run in range(args.runs):
                image = IMAGES[(run + 1) % 2]
                took, run_steps = rollout(args.binary, env, group, image, sock)
                totals.append(took)
                steps.extend(run_steps)
                print(f"run {run + 1}: {image}, {len(run_steps)} steps, {took:.1f} s",
                      file=sys.stderr)
        finally:
            haproxy.kill()
            cleanup()
    print(f"{args.replicas} replicas, max surge 2, max unavailable 0, {args.runs} rollouts, "
          f"{len(steps)} steps")
    print(f"{'per step (ms)':<34} {'median':>9} {'max':>9}")
    print(row("whole step", [s["took_ms"] for s in steps]))
    print(row("  waiting for health checks", [s["health_ms"] for s in steps]))
    print(row("  draining and stopping old", [s["drain_ms"] for s in steps]))
    print(row("  engine creating and starting", [s["create_ms"] for s in steps]))
    print(row("  Pilothouse's own work", [s["own_ms"] for s in steps]))
    firsts = [s for s in steps if s["step"] == 1]
    later = [s for s in steps if s["step"] != 1]
    print(row("    in a first step", [s["own_ms"] for s in firsts]))
    print(row("    in the steps after it", [s["own_ms"] for s in later]))
    print(f"{'whole rollout (s)':<34} {statistics.median(totals):>9.1f} {max(totals):>9.1f}")


if __name__ == "__main__":
    main()
