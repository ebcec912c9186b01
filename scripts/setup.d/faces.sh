# Sourced by scripts/test.sh. Installs what the defacing tests (real head CT/MR series) need:
#   invesalius-examples   Cranium.inv3, a real head CT (InVesalius' example project)
#   mricron-data          ch2.nii.gz / ch2bet.nii.gz, the Colin27 T1 head and its brain
#   nibabel, scipy        read NIfTI, resample, build the truth masks (scripts/faces/make-series.py)
#   dlib-bin              dlib with its CNN face detector (dlib.cnn_face_detection_model_v1), prebuilt
#   face-recognition-models  the detector's weights (mmod_human_face_detector.dat)
#   pillow, pylibjpeg(+plugins), pyjpegls  the judge's images and pydicom's compressed-pixel decoders
# then runs scripts/faces/fetch.sh (pydeface 2.1.0's template + face mask from PyPI, the files
# above copied into testdata/faces/src/, all SHA-256 checked).
# Idempotent and quiet: installs only what is missing. Sourced, so it never exits.
faces_need=()
for faces_pkg in invesalius-examples mricron-data; do
  dpkg-query -W -f='${Status}' "$faces_pkg" 2>/dev/null | grep -q "ok installed" || faces_need+=("$faces_pkg")
done
if [ ${#faces_need[@]} -gt 0 ]; then
  echo "setup faces: installing ${faces_need[*]}"
  if [ "$(id -u)" = 0 ]; then faces_sudo=""; else faces_sudo="sudo"; fi
  $faces_sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $faces_sudo apt-get install -y -qq --no-install-recommends "${faces_need[@]}" >/dev/null
fi
faces_pip=()
python3 -c "import nibabel" 2>/dev/null || faces_pip+=("nibabel==5.4.2")
python3 -c "import scipy.ndimage, scipy.spatial" 2>/dev/null || faces_pip+=("scipy==1.17.1")
python3 -c "import dlib; dlib.cnn_face_detection_model_v1" 2>/dev/null || faces_pip+=("dlib-bin==20.0.1.post1")
python3 -c "import face_recognition_models" 2>/dev/null || faces_pip+=("face-recognition-models==0.3.0")
# The judge's renders (pillow) and pydicom's decoders for compressed series (scripts/faces/attack.py
# falls back to gdcmconv/dcmtk without them); pins in scripts/faces/requirements.txt.
python3 -c "import PIL, pylibjpeg, libjpeg, openjpeg, rle, jpeg_ls" 2>/dev/null || faces_pip+=(
  "pillow==13.0.0" "pylibjpeg==2.1.0" "pylibjpeg-libjpeg==2.5.0" "pylibjpeg-openjpeg==2.6.0"
  "pylibjpeg-rle==2.2.0" "pyjpegls==1.5.1")
if [ ${#faces_pip[@]} -gt 0 ]; then
  echo "setup faces: pip installing ${faces_pip[*]}"
  pip install --quiet --disable-pip-version-check "${faces_pip[@]}" 2>&1 | grep -v "Running pip as the 'root' user" || true
fi
# face_recognition_models imports pkg_resources, which setuptools >= 81 no longer ships
if ! python3 -c "import face_recognition_models as m; m.cnn_face_detector_model_location()" 2>/dev/null; then
  pip install --quiet --disable-pip-version-check "setuptools<81" 2>&1 | grep -v "Running pip as the 'root' user" || true
fi
bash "$(dirname "${BASH_SOURCE[0]}")/../faces/fetch.sh"
unset faces_need faces_pkg faces_sudo faces_pip
