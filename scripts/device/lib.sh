# Shared by the device scripts: `step NAME SECONDS CMD...` runs CMD under a timeout, logs its output to $OUT/NAME.txt
# and its exit status and wall time to $OUT/steps.txt.
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
