# Sourced by scripts/test.sh. Installs what the gateway tests (crates/veil-gateway,
# crates/veil/tests/gateway.rs) send to and receive from:
#   orthanc           a real PACS as the gateway's destination, read back through its REST API
#   orthanc-dicomweb  its DICOMweb plugin: the STOW-RS destination
#   dcmtk             echoscu/storescu as senders, storescp (bit-preserving) as a receiver,
#                     both also over DICOM TLS
#   openssl           the test PKI (a CA and the certificates it signs) for the TLS test
#   ca-certificates   the system trust store a dicom+tls:// destination is checked against
# Idempotent and quiet: installs only what is missing. The Debian package's own Orthanc service
# is not needed (the tests start theirs on free ports); in a container without systemd it does
# not start.
gateway_need=()
command -v Orthanc >/dev/null 2>&1 || gateway_need+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || gateway_need+=(orthanc-dicomweb)
command -v storescp >/dev/null 2>&1 || gateway_need+=(dcmtk)
command -v openssl >/dev/null 2>&1 || gateway_need+=(openssl)
[ -e /etc/ssl/certs/ca-certificates.crt ] || gateway_need+=(ca-certificates)
if [ ${#gateway_need[@]} -gt 0 ]; then
  echo "setup gateway: installing ${gateway_need[*]}"
  if [ "$(id -u)" = 0 ]; then gateway_sudo=""; else gateway_sudo="sudo"; fi
  $gateway_sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $gateway_sudo apt-get install -y -qq --no-install-recommends "${gateway_need[@]}" >/dev/null
fi
unset gateway_need gateway_sudo
