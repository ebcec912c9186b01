"""A real Orthanc (Debian package) on free ports for the gateway benchmarks
(bench/gateway_load.py, bench/gateway_soak.py): started in its own directory under `work`,
read back through its REST API, killed and started again at will."""
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(port, path, body=None, timeout=600):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


class Orthanc:
    def __init__(self, work, name, **settings):
        self.dir = os.path.join(work, f"orthanc-{name}")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.dicom, self.http = free_port(), free_port()
        self.config = os.path.join(self.dir, "orthanc.json")
        with open(self.config, "w") as f:
            json.dump({"Name": name, "StorageDirectory": self.dir, "IndexDirectory": self.dir,
                       "DicomAet": "ORTHANC", "DicomPort": self.dicom, "HttpPort": self.http,
                       "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
                       "DicomAlwaysAllowStore": True, "Plugins": [], "StorageCompression": False,
                       **settings}, f)
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["Orthanc", self.config], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                http(self.http, "/system")
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("Orthanc did not start")

    def count(self):
        return http(self.http, "/statistics")["CountInstances"]

    def stop(self):
        self.proc.kill()
        self.proc.wait()
