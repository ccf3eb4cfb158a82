#!/bin/bash
# Same behaviour across a refactor: the bank sample's synthetic release (seed 7), its DP plan
# (epsilon 3) and three codes runs (seeds 0-2), made by the code of commit REF in its own git
# worktree; compare two TAGs with `python -m benchmarks.same_behaviour`.
# usage: CLOAKFLOW_DATA_DIR=... [WHAT="syn dp codes"] benchmarks/same_behaviour.sh REF TAG
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
REF=$1; TAG=$2
WT=${ACCEPT_DIR:-/tmp/cloakflow-same}/wt-$TAG; PKG=/tmp/pkg-$TAG; OUT=${ACCEPT_DIR:-/tmp/cloakflow-same}/$TAG
[ -d $WT ] || git -C $REPO worktree add -f $WT $REF >/dev/null 2>&1
mkdir -p $PKG/cloakflow $OUT; touch $PKG/cloakflow/__init__.py
for p in flows tasks models federated; do ln -sfn $WT/$p $PKG/cloakflow/$p; done
export PYTHONPATH=$PKG:$WT CLOAKFLOW_DATA_DIR=${CLOAKFLOW_DATA_DIR:?set CLOAKFLOW_DATA_DIR} PREFECT_HOME=$(mktemp -d) \
  PREFECT_SERVER_ANALYTICS_ENABLED=false GX_ANALYTICS_ENABLED=false TF_CPP_MIN_LOG_LEVEL=2
cd $WT
PY="nice -n 10 $REPO/.venv/bin/python -c 'from cloakflow.flows.cli import main; main()'"
S=$CLOAKFLOW_DATA_DIR/bank-additional.csv
for what in ${WHAT:-syn dp codes}; do
case $what in
syn) /usr/bin/time -v bash -c "$PY synthesize --input $S --seed 7 --out $OUT/syn --accept-risk acceptance" > $OUT/syn.log 2>&1 ;;
dp) bash -c "$PY synthesize --input $S --seed 7 --dp-epsilon 3 --dp-epochs 10 --out $OUT/dp --accept-risk acceptance" > $OUT/dp.log 2>&1 ;;
codes) for s in 0 1 2; do /usr/bin/time -v bash -c "$PY run --input $S --seed $s --out $OUT/codes$s --accept-risk acceptance --no-cache" > $OUT/codes$s.log 2>&1; done ;;
esac
done
echo done > $OUT/DONE
