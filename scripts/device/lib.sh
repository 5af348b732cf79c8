# Sourced by the device scripts (after they may set BIN): the binaries' folder ($BIN, default .gpucarry) joins the
# library path; `step NAME SECONDS CMD...` runs CMD under a timeout, logs its output to $OUT/NAME.txt and its exit
# status and wall time to $OUT/steps.txt; `packed_results` / `pack_results` put everything into one tarball.
BIN=${BIN:-.gpucarry}
export LD_LIBRARY_PATH=$PWD/$BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

step() {
  local name=$1 limit=$2
  shift 2
  local t0 t1 rc
  t0=$(date +%s%N)
  timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
  rc=$?
  t1=$(date +%s%N)
  printf '%-28s rc=%-3s %6d ms\n' "$name" "$rc" $(((t1 - t0) / 1000000)) | tee -a "$OUT/steps.txt"
}

# The device tool brings back a few files only: results go to $OUT/results, and pack_results turns that folder into
# $OUT/results.tgz.
packed_results() {
  FINAL=${OUT:?set OUT to the output folder}
  OUT=$FINAL/results
  mkdir -p "$OUT"
}
pack_results() {
  tar czf "$FINAL/results.tgz" -C "$FINAL" results && rm -rf "$OUT"
}
