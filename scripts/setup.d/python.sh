# Sourced by scripts/test.sh. Installs what the Python package's tests (crates/veil-py/tests,
# run by crates/veil/tests/python.rs) need, and builds and installs the package from this tree:
#   maturin, pytest, pandas, pyarrow   build the wheel; run the tests; the tables veil.risk takes
#   pyspark                            Spark in local mode for veil.spark's tests
#   openjdk-17-jre-headless            the JVM pyspark starts (only when no `java` is found)
# Pinned versions, so that a fresh machine runs what was tested. Idempotent: installs only what
# is missing; the wheel is rebuilt incrementally (dev profile: the tests check behaviour, and it
# shares most of its dependencies' builds with `cargo test`).
python_pins=("maturin==1.7.4" "pytest==9.2.0" "pandas==3.1.2" "pyarrow==26.0.1" "pyspark==3.5.3")
python_need=()
for python_pin in "${python_pins[@]}"; do
  python_pkg=${python_pin%%==*}
  python_ver=${python_pin##*==}
  [ "$(python3 -c "import importlib.metadata as m; print(m.version('$python_pkg'))" 2>/dev/null)" = "$python_ver" ] \
    || python_need+=("$python_pin")
done
if [ ${#python_need[@]} -gt 0 ]; then
  echo "setup python: installing ${python_need[*]}"
  pip install --quiet "${python_need[@]}"
fi
if ! command -v java >/dev/null 2>&1; then
  echo "setup python: installing openjdk-17-jre-headless (for pyspark)"
  if [ "$(id -u)" = 0 ]; then python_sudo=""; else python_sudo="sudo"; fi
  $python_sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $python_sudo apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >/dev/null
fi
echo "setup python: building and installing the veil package (crates/veil-py)"
python_wheels="${CARGO_TARGET_DIR:-target}/wheels"
rm -f "$python_wheels"/veil-*.whl
maturin build --quiet --profile dev -m crates/veil-py/Cargo.toml -o "$python_wheels"
pip install --quiet --force-reinstall --no-deps "$python_wheels"/veil-*.whl
unset python_pins python_need python_pin python_pkg python_ver python_sudo python_wheels
