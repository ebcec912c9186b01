# Sourced by scripts/test.sh. Installs what the pixel stage (crates/veil-pixels) needs:
#   tesseract-ocr + tesseract-ocr-eng  the OCR engine and its English model (loaded at run time;
#                                      no -dev package is needed to build)
#   cmake, g++                         build the CharLS JPEG-LS codec (charls-sys) from source
#   fonts-dejavu-core                  fonts the synthetic burned-in text tests render with
#   unzip                              unpacks the deid-data ultrasound cines for the tests
# Idempotent and quiet: installs only what is missing.
pixels_need=()
command -v tesseract >/dev/null 2>&1 || pixels_need+=(tesseract-ocr)
[ -e /usr/share/tesseract-ocr/5/tessdata/eng.traineddata ] || [ -e /usr/share/tesseract-ocr/4.00/tessdata/eng.traineddata ] || pixels_need+=(tesseract-ocr-eng)
command -v cmake >/dev/null 2>&1 || pixels_need+=(cmake)
command -v g++ >/dev/null 2>&1 || pixels_need+=(g++)
command -v unzip >/dev/null 2>&1 || pixels_need+=(unzip)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || pixels_need+=(fonts-dejavu-core)
if [ ${#pixels_need[@]} -gt 0 ]; then
  echo "setup pixels: installing ${pixels_need[*]}"
  if [ "$(id -u)" = 0 ]; then pixels_sudo=""; else pixels_sudo="sudo"; fi
  $pixels_sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $pixels_sudo apt-get install -y -qq --no-install-recommends "${pixels_need[@]}" >/dev/null
fi
unset pixels_need pixels_sudo
