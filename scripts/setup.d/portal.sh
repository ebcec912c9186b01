# Sourced by scripts/test.sh: what the portal's tests need (crates/veil/tests/portal*.rs).
# Headless Chromium and its WebDriver (Debian `chromium`, `chromium-driver`) for the browser
# flows; openssl (a throw-away certificate for the HTTPS test) and curl (to look at the HTTPS
# responses). Exports VEIL_TEST_CHROMIUM and VEIL_TEST_CHROMEDRIVER. Idempotent.

veil_portal_setup() {
  local need=()
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  if [ ${#need[@]} -gt 0 ]; then
    echo "portal.sh: installing ${need[*]}"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  VEIL_TEST_CHROMIUM=$(command -v chromium) || { echo "portal.sh: no chromium after install" >&2; return 1; }
  VEIL_TEST_CHROMEDRIVER=$(command -v chromedriver) || { echo "portal.sh: no chromedriver after install" >&2; return 1; }
  export VEIL_TEST_CHROMIUM VEIL_TEST_CHROMEDRIVER
}

veil_portal_setup
