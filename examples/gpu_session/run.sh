#!/bin/bash
# Two ttm-96 pretraining runs side by side on one GPU inside a fixed wall-clock budget (how
# ttm-96-wide was trained, docs/training.md "One GPU phase and a wider member"). Steps: install
# carried packages, build the corpus, time the Triton scans (benchmarks/scan.py --device cuda),
# probe both runs' step rates for PC steps (steptimer.py), size data.windows_per_epoch so both
# finish by BUDGET seconds after the start (full cosine schedule, no cut-off), train, tar the
# checkpoints and logs into $OUT/results.tgz.
#
# Usage from the repository root:  BUDGET=555 bash examples/gpu_session/run.sh
# On a device machine (Python 3.12, no network) run examples/gpu_session/prepare.sh here first: it
# puts the wheels the device lacks in .whl/ (carry it), the real pretraining tables and the
# evaluation folders in shared/data/, and moves what training does not read out of the tree, which
# must travel in 64 MiB. The `general` corpus (CORPUS=general, with EXTRA="corpus@data.corpus=general")
# reads ../shared/data relative to the working folder $W, so the device command starts with
# `mkdir -p $(dirname $W) && cp -r shared $(dirname $W)/` (W defaults to /tmp/w).
# LOCAL=1 PY=$PWD/.venv/bin/python TR=cpu with small PS/PC/BS and EXTRA="data.batch_size=32 ..."
# rehearses the whole script on a CPU.
T0=$(date +%s); END=$((T0 + ${BUDGET:-560}))
PY=${PY:-python3}; TR=${TR:-gpu}; W=${W:-/tmp/w}; mkdir -p $W
log() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
if [ -d .whl ] && [ -z "$LOCAL" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  $PY -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/tsfm_pkg . >$W/pip.log 2>&1 || { cat $W/pip.log; exit 1; }
  export PYTHONPATH=/tmp/tsfm_pkg:/tmp/site:$PWD/examples/gpu_session
else
  export PYTHONPATH=$PWD/examples/gpu_session
fi
export TSFM_CACHE=$W/cache PYTHONUNBUFFERED=1
log installed; nvidia-smi -L 2>/dev/null; uptime
cd $W
$PY $OLDPWD/tools/build_corpus.py $OLDPWD/configs/corpus/${CORPUS:-cycles_heldout}.yaml --workers ${BW:-14} --quiet >corpus.log 2>&1 &
CP=$!
if [ "$TR" = gpu ]; then (cd $OLDPWD && timeout 170 $PY benchmarks/scan.py --device cuda --threads 4 --repeats 3 --lengths 512 2048 --output $W/scan_gpu.md >$W/scan.log 2>&1) & fi
wait $CP; tail -c 300 corpus.log; log corpus
A="experiment=ttm_96_gpu trainer=$TR"
C="experiment=ttm_96_gpu trainer=$TR +model.d_model=192 +model.num_layers=3 +model.decoder_d_model=64 seed=32"
EXTRA=${EXTRA:-}
probe() { $PY -m tsfm.train.pretrain $1 $EXTRA 'trainer.callbacks=[{_target_: steptimer.StepTimer, start: '${PS:-60}', count: '${PC:-300}', out: '$2'}]' data.val_windows=1024 hydra.run.dir=$W/probe_$3 >$W/probe_$3.log 2>&1; }
probe "$A" $W/rate_a a & probe "$C" $W/rate_c c & wait
grep -h STEPRATE probe_*.log; log probed
if [ ! -s rate_a ] || [ ! -s rate_c ]; then tail -n 25 probe_a.log probe_c.log; EXTRA="$EXTRA trainer.precision=32-true"; log "retry in fp32"
  probe "$A" $W/rate_a a & probe "$C" $W/rate_c c & wait; grep -h STEPRATE probe_*.log; fi
for r in a c; do [ -s rate_$r ] || { tail -n 30 probe_$r.log; exit 1; }; done
LEFT=$(( END - $(date +%s) - ${STARTUP:-25} ))
BS=${BS:-1024}
NA=$($PY -c "print(int(float(open('rate_a').read()) * $LEFT) // 50 * 50 * $BS)")
NC=$($PY -c "print(int(float(open('rate_c').read()) * $LEFT) // 50 * 50 * $BS)")
log "left ${LEFT}s: windows a=$NA c=$NC"
$PY -m tsfm.train.pretrain $A $EXTRA data.windows_per_epoch=$NA hydra.run.dir=$W/gpu_a "command='tsfm pretrain $A data.windows_per_epoch=$NA'" >run_a.log 2>&1 &
$PY -m tsfm.train.pretrain $C $EXTRA data.windows_per_epoch=$NC hydra.run.dir=$W/gpu_c "command='tsfm pretrain $C data.windows_per_epoch=$NC'" >run_c.log 2>&1 &
wait; log trained
grep -h "saved checkpoint\|Error\|error" run_a.log run_c.log | tail -5
tar czf ${OUT:-/tmp/out}/results.tgz gpu_a/checkpoint gpu_c/checkpoint *.log rate_* $( [ -f scan_gpu.md ] && echo scan_gpu.md scan_gpu.json ) 2>/dev/null
cp scan_gpu.md ${OUT:-/tmp/out}/ 2>/dev/null; log done
