"""Load benchmark of `veil gateway` (issue 20), run by scripts/bench-gateway.sh.

usage: gateway_load.py VEIL_BINARY WORK_DIR SCALE SENDERS

Builds 2,000 x SCALE instances from real files (bench/make_shapes.py: 64x64 MR and 128x128 CT,
planted identifiers), split among SENDERS parallel dcmtk `storescu` processes, and measures in
one run, each against a fresh Orthanc (Debian package) on free ports:

  plain      storescu -> Orthanc, no Veil: the network and Orthanc's own storage rate
  veil       storescu -> veil gateway -> Orthanc: received, spooled (sealed, fsync'd),
             de-identified, verified and forwarded; timed until Orthanc holds every instance
  anonymize  Orthanc's own /studies/{id}/anonymize over the same instances (after "plain")

and prints instances/s, MB/s and the gateway's peak RSS (VmHWM), as a Markdown table.
"""
import os
import shutil
import subprocess
import sys
import time

from orthanc_peer import Orthanc, http

veil, work, scale, senders = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def send_all(port, called, parts):
    procs = [subprocess.Popen(["storescu", "-aet", "SENDER", "-aec", called, "+sd", "127.0.0.1",
                               str(port), d], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for d in parts]
    return procs


corpus = os.path.join(work, f"gateway-corpus-{scale}")
if not os.path.exists(os.path.join(corpus, ".complete")):
    shutil.rmtree(corpus, ignore_errors=True)
    subprocess.run([sys.executable, os.path.join(root, "bench", "make_shapes.py"), corpus,
                    str(scale), "mr64", "ct128"], check=True, stderr=subprocess.DEVNULL)
    files = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(corpus) for f in fs
                   if f.endswith(".dcm"))
    for i, f in enumerate(files):
        d = os.path.join(corpus, f"part{i % senders}")
        os.makedirs(d, exist_ok=True)
        os.rename(f, os.path.join(d, f"{i:06d}.dcm"))
    for s in ("mr64", "ct128"):
        shutil.rmtree(os.path.join(corpus, s), ignore_errors=True)
    open(os.path.join(corpus, ".complete"), "w").close()
parts = sorted(os.path.join(corpus, d) for d in os.listdir(corpus) if d.startswith("part"))
n = sum(len(os.listdir(p)) for p in parts)
size = sum(os.path.getsize(os.path.join(p, f)) for p in parts for f in os.listdir(p))
for p in parts:  # page cache warm
    for f in os.listdir(p):
        open(os.path.join(p, f), "rb").read()
rows = []


def row(name, seconds, rss=""):
    rows.append(f"| {name} | {n:,} | {seconds:.2f} | {n / seconds:,.0f} | "
                f"{size / 1e6 / seconds:,.1f} | {rss} |")
    print(rows[-1], flush=True)


def wait_count(orthanc, target, limit=3600):
    t = time.time()
    while orthanc.count() < target:
        if time.time() - t > limit:
            raise SystemExit(f"only {orthanc.count()} of {target} instances arrived")
        time.sleep(0.1)


# plain storescu -> Orthanc
o = Orthanc(work, "plain", ConcurrentJobs=2)
t0 = time.time()
for p in send_all(o.dicom, "ORTHANC", parts):
    p.wait()
wait_count(o, n)
row(f"{senders} x storescu -> Orthanc (no Veil)", time.time() - t0)

# Orthanc's own anonymization of the same instances
studies = http(o.http, "/studies")
t0 = time.time()
for s in studies:
    http(o.http, f"/studies/{s}/anonymize", {"Force": True, "Synchronous": True})
row("Orthanc /studies/{id}/anonymize (synchronous, study by study)", time.time() - t0)
o.stop()

# storescu -> veil gateway -> Orthanc
o = Orthanc(work, "veil", ConcurrentJobs=2)
gw = os.path.join(work, "gateway")
shutil.rmtree(gw, ignore_errors=True)
os.makedirs(gw)
subprocess.run([veil, "key", "new", os.path.join(gw, "site.key")], check=True,
               stdout=subprocess.DEVNULL)
with open(os.path.join(gw, "route.toml"), "w") as f:
    f.write("[faces]\ndeface = false\n")
with open(os.path.join(gw, "gateway.toml"), "w") as f:
    f.write(f'[listen]\naddress = "127.0.0.1:0"\nae_title = "VEIL"\n\n[[allow]]\n'
            f'ae_title = "SENDER"\n\n[spool]\ndir = "spool"\nkey = "site.key"\n\n[route]\n'
            f'policy = "route.toml"\ndestination = "dicom://ORTHANC@127.0.0.1:{o.dicom}"\n')
g = subprocess.Popen([veil, "gateway", "--config", os.path.join(gw, "gateway.toml")],
                     stderr=subprocess.PIPE, text=True)
line = g.stderr.readline()
port = int(line.split("listening on 127.0.0.1:")[1].split(";")[0].split()[0])
peak = [0]


def hwm():
    try:
        with open(f"/proc/{g.pid}/status") as f:
            for l in f:
                if l.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(l.split()[1]))
    except OSError:
        pass


t0 = time.time()
procs = send_all(port, "VEIL", parts)
for p in procs:
    while p.poll() is None:
        hwm()
        time.sleep(0.1)
received = time.time() - t0
while o.count() < n:
    hwm()
    time.sleep(0.1)
    if time.time() - t0 > 3600:
        raise SystemExit(f"only {o.count()} of {n} instances arrived")
total = time.time() - t0
hwm()
row(f"{senders} x storescu -> veil gateway -> Orthanc (end to end)", total, f"{peak[0] // 1024}")
print(f"(the senders were done after {received:.2f} s: receiving and spooling "
      f"{n / received:,.0f} instances/s)", flush=True)
g.kill()
g.wait()
o.stop()

print()
print(f"{n:,} instances ({size / 1e6:.0f} MB: 64x64 MR and 128x128 CT from pydicom's test files, "
      f"planted identifiers), {senders} parallel storescu, {os.cpu_count()} cores, Orthanc "
      f"{subprocess.run(['Orthanc', '--version'], capture_output=True, text=True).stdout.split()[1]}")
print()
print("| path | instances | seconds | instances/s | MB/s | peak RSS of veil (MB) |")
print("|---|---|---|---|---|---|")
for r in rows:
    print(r)
