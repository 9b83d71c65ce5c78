#!/bin/bash
# For session 11 (issue 9): the schedule study's open questions, through run10.sh (which now passes
# --lr-width 256, so --lrs 1e-3 trains at the profiles' rate at every width):
#  1. sparse attention at w512 at the schedule's rate (5e-4; session 10 ran it at 1e-3: 0.158 at the cap);
#  2. whether small widths learn at a larger rate: nothing learnt below w128 at 1e-3 (session 10).
#     ED n=6 standard w32 at 3e-3 and 8e-3 (1e-3 x 256/32, the 1/width rule continued below w256).
#     If a rate by a stated rule makes them learn, the rule is a schedule change for every model
#     (the study decides it, never a cell).
# About 420 s for the first, 100 s each for the others: give it 580 s; what does not fit is left
# for a later call (the study skips it, nothing half-trained).
# Run from the repository root: bash run24.sh <git rev, written out> <seconds>
exec bash "$(dirname "$0")/run10.sh" "$1" "$2" \
  "--datasets ed_n12 --attentions sparse --widths 512 --lrs 1e-3" \
  "--datasets ed_n6 --attentions standard --widths 32 --lrs 8e-3,3e-3"
