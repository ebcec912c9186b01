"""Outage soak of `veil gateway` (issue 20), run by scripts/soak-gateway.sh.

usage: gateway_soak.py VEIL_BINARY WORK_DIR MINUTES OUTAGE_SECONDS

One sender (dcmtk storescu, batches of 50 real-file instances: 64x64 MR and 128x128 CT from
bench/make_shapes.py, every instance its own SOP Instance UID) sends without pause for MINUTES
through the gateway to a real Orthanc. During the run:

  - at a quarter of the time Orthanc is killed, and restarted OUTAGE_SECONDS later;
  - at half the time the gateway is SIGKILLed and started again on the same port and spool
    (the sender's batch in flight fails and is sent again, as a modality would retry).

Every instance a batch acknowledged must reach Orthanc once. Prints what was sent and
acknowledged, what Orthanc holds (distinct instances), the deepest queue during the outage, how
long the queue took to drain after Orthanc came back, and the gateway's peak RSS.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from orthanc_peer import Orthanc, free_port

veil, work, minutes, outage = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 50


# A corpus big enough that no instance is sent twice except as a retry.
scale = max(1.0, minutes * 60 * 60 / 2000)  # room for ~60 instances/s
corpus = os.path.join(work, f"soak-corpus-{scale:.1f}")
if not os.path.exists(os.path.join(corpus, ".complete")):
    shutil.rmtree(corpus, ignore_errors=True)
    subprocess.run([sys.executable, os.path.join(root, "bench", "make_shapes.py"), corpus,
                    str(scale), "mr64", "ct128"], check=True, stderr=subprocess.DEVNULL)
    open(os.path.join(corpus, ".complete"), "w").close()
files = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(corpus) for f in fs
               if f.endswith(".dcm"))

orthanc = Orthanc(work, "soak")
gw = os.path.join(work, "gateway-soak")
shutil.rmtree(gw, ignore_errors=True)
os.makedirs(gw)
subprocess.run([veil, "key", "new", os.path.join(gw, "site.key")], check=True,
               stdout=subprocess.DEVNULL)
with open(os.path.join(gw, "route.toml"), "w") as f:
    f.write("[faces]\ndeface = false\n")
gw_port = free_port()
config = os.path.join(gw, "gateway.toml")
with open(config, "w") as f:
    f.write(f'[listen]\naddress = "127.0.0.1:{gw_port}"\nae_title = "VEIL"\n\n[[allow]]\n'
            f'ae_title = "SENDER"\n\n[spool]\ndir = "spool"\nkey = "site.key"\n\n[route]\n'
            f'policy = "route.toml"\ndestination = "dicom://ORTHANC@127.0.0.1:{orthanc.dicom}"\n')


def start_gateway():
    g = subprocess.Popen([veil, "gateway", "--config", config], stderr=subprocess.PIPE,
                         text=True)
    g.stderr.readline()
    return g


def status():
    out = subprocess.run([veil, "gateway", "status", "--json", "--config", config],
                         capture_output=True, text=True)
    return json.loads(out.stdout)


peak_rss = [0]


def hwm(g):
    try:
        with open(f"/proc/{g.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peak_rss[0] = max(peak_rss[0], int(line.split()[1]))
    except OSError:
        pass


gateway = start_gateway()
t0 = time.time()
end = t0 + minutes * 60
outage_at, restore_at, kill_at = t0 + (end - t0) / 4, None, t0 + (end - t0) / 2
acknowledged, sent, retried, deepest, drained_in = 0, 0, 0, 0, None
killed = restored = down = False
i = 0
while time.time() < end and i < len(files):
    batch = files[i:i + BATCH]
    now = time.time()
    if not down and not restored and now >= outage_at:
        orthanc.stop()
        down, restore_at = True, now + outage
        print(f"{now - t0:7.1f} s  Orthanc killed", flush=True)
    if down and now >= restore_at:
        orthanc.start()
        down, restored, restored_time = False, True, now
        print(f"{now - t0:7.1f} s  Orthanc restarted", flush=True)
    if not killed and now >= kill_at:
        hwm(gateway)
        gateway.send_signal(signal.SIGKILL)
        gateway.wait()
        gateway = start_gateway()
        killed = True
        print(f"{now - t0:7.1f} s  gateway SIGKILLed and restarted", flush=True)
    ok = subprocess.run(["storescu", "-aet", "SENDER", "-aec", "VEIL", "127.0.0.1", str(gw_port)]
                        + batch, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                        ).returncode == 0
    sent += len(batch)
    hwm(gateway)
    if not ok:
        retried += len(batch)
        time.sleep(0.5)
        continue  # the same batch again, as a modality retries
    acknowledged += len(batch)
    i += BATCH
    if down:
        deepest = max(deepest, status()["waiting"])
    if restored and drained_in is None and status()["waiting"] == 0:
        drained_in = time.time() - restored_time
print(f"{time.time() - t0:7.1f} s  sender stopped", flush=True)
limit = time.time() + 1800
while orthanc.count() < acknowledged and time.time() < limit:
    hwm(gateway)
    time.sleep(1)
if drained_in is None:
    drained_in = time.time() - restored_time
held = orthanc.count()
hwm(gateway)
st = status()
gateway.kill()
orthanc.stop()
print()
print(f"Soak: {minutes:g} min, one storescu in batches of {BATCH}, Orthanc down {outage:g} s at "
      f"a quarter of the run, the gateway SIGKILLed at half; {os.cpu_count()} cores.")
print()
print("| measure | value |")
print("|---|---|")
print(f"| instances acknowledged to the sender | {acknowledged:,} |")
print(f"| instances sent (with the sender's retries of failed batches) | {sent:,} ({retried:,} retried) |")
print(f"| distinct instances in Orthanc at the end | {held:,} |")
print(f"| lost (acknowledged, not in Orthanc) | {max(0, acknowledged - held):,} |")
print(f"| deepest queue while Orthanc was down | {deepest:,} |")
print(f"| queue drained after Orthanc came back | {drained_in:.1f} s |")
print(f"| delivered / held back (gateway status) | {st['drain']['delivered']:,} / {st['drain']['held_back']:,} |")
print(f"| peak RSS of the gateway | {peak_rss[0] // 1024} MB |")
if held != acknowledged:
    raise SystemExit(f"FAIL: {acknowledged} acknowledged, {held} in Orthanc")
