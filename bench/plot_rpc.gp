# Latency distributions of one client (rpc_benchmark --cdf DIR): the floor
# (a bare gRPC health server), physpoold's health check, and physpoold's
# Allocate and Release of the allocate/release pair.
#   gnuplot -e "dir='DIR'; out='rpc.png'" bench/plot_rpc.gp
set terminal png size 1000,600 noenhanced
set output out
set title "physpool RPC latency, 1 client, unix socket (same run)"
set xlabel "latency (us, log)"
set ylabel "fraction of calls at or below"
set logscale x
set key bottom right
set grid
plot dir."/floor.cdf" using 1:2 with lines lw 2 title "floor: bare gRPC Health.Check", \
     dir."/health.cdf" using 1:2 with lines lw 2 title "physpoold Health.Check", \
     dir."/allocate.cdf" using 1:2 with lines lw 2 title "physpoold Allocate (64 KiB)", \
     dir."/release.cdf" using 1:2 with lines lw 2 title "physpoold Release"
