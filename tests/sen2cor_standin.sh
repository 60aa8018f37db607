#!/bin/sh
# A stand-in for Sen2Cor's L2A_Process: L2A_Process PRODUCT --resolution=10
#   --output_dir OUT --tile TILE. Writes OUT/<product, MSIL1C -> MSIL2A>.SAFE with one
# "band" per input band (its md5), as Sen2Cor writes an L2A product next to nothing else.
set -eu
product=$1; shift
res=; out=; tile=
while [ $# -gt 0 ]; do
  case "$1" in
    --resolution=*) res=${1#--resolution=} ;;
    --output_dir) out=$2; shift ;;
    --tile) tile=$2; shift ;;
    *) echo "L2A_Process: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ -f "$product/productInfo.json" ] || { echo "no productInfo.json in $product" >&2; exit 2; }
[ -f "$tile/tileInfo.json" ] || { echo "no tileInfo.json in $tile" >&2; exit 2; }
# The tests' transient fault: the second scene of a day fails its first attempt.
case "$tile" in */1) if [ "${BIDSBATCH_ATTEMPT:-1}" = 1 ]; then
  echo "L2A_Process: simulated transient failure" >&2; exit 3; fi ;; esac
name=$(basename "$product" | sed 's/MSIL1C/MSIL2A/')
dest="$out/$name.SAFE/GRANULE/IMG_DATA/R${res}m"
mkdir -p "$dest"
for band in "$tile"/*.jp2; do
  md5sum "$band" | cut -d' ' -f1 > "$dest/$(basename "$band" .jp2)_${res}m.txt"
done
echo "L2A_Process done: $name at ${res} m"
