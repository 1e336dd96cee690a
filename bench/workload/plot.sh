#!/usr/bin/env bash
# PNG plots of baton-bench / baton-sim reports, drawn with gnuplot
# (scripts/deps.sh installs gnuplot-nox):
#   plot.sh cdf OUT.png LABEL=DIR...      TTFT and TPOT CDFs side by side,
#                                         one line per report folder (--out)
#   plot.sh goodput OUT.png LABEL=FILE... goodput vs offered rate, one line
#                                         per file of "rate goodput" rows
#   plot.sh bars OUT.png TITLE FILE       one bar per "label goodput" row
# Labels are plain words (colocated, 1P:3D, ...). Exits 1 with a message
# when gnuplot is missing.
set -euo pipefail

[ $# -ge 3 ] || { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
command -v gnuplot >/dev/null 2>&1 ||
  { echo "plot.sh: gnuplot is not installed (scripts/deps.sh)" >&2; exit 1; }
kind=$1 out=$2
shift 2

series() { # file pattern (%s = the path), using, style; then LABEL=PATH...
  local pat=$1 using=$2 style=$3 sep="" arg label path
  shift 3
  for arg in "$@"; do
    label=${arg%%=*} path=${arg#*=}
    printf '%s"%s" using %s with %s lw 2 title "%s"' "$sep" \
      "$(printf "$pat" "$path")" "$using" "$style" "$label"
    sep=", "
  done
}

case $kind in
  cdf)
    gnuplot <<EOF
set terminal pngcairo size 1200,480 noenhanced
set output "$out"
set multiplot layout 1,2
set grid
set key bottom right
set ylabel "fraction of requests"
set yrange [0:1]
set title "TTFT CDF"
set xlabel "TTFT (ms)"
plot $(series '%s/ttft_cdf.dat' '1:2' lines "$@")
set title "TPOT CDF"
set xlabel "TPOT (ms)"
plot $(series '%s/tpot_cdf.dat' '1:2' lines "$@")
unset multiplot
EOF
    ;;
  goodput)
    gnuplot <<EOF
set terminal pngcairo size 800,480 noenhanced
set output "$out"
set grid
set key top left
set title "goodput vs offered load"
set xlabel "offered rate (requests/s)"
set ylabel "goodput (requests/s meeting both SLOs)"
plot $(series '%s' '1:2' linespoints "$@")
EOF
    ;;
  bars)
    title=$1 file=$2
    gnuplot <<EOF
set terminal pngcairo size 900,480 noenhanced
set output "$out"
set grid ytics
set title "$title"
set ylabel "goodput (requests/s meeting both SLOs)"
set style fill solid 0.6
set boxwidth 0.6
set xtics rotate by -30
set yrange [0:*]
plot "$file" using 0:2:xtic(1) with boxes notitle
EOF
    ;;
  *)
    echo "plot.sh: unknown plot '$kind' (cdf, goodput, bars)" >&2
    exit 2
    ;;
esac
