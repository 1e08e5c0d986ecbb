#!/bin/bash
# usage: run.sh HERALD_BINARY N_WEBHOOKS LABEL
set -u
BIN=$1; N=$2; LABEL=$3
PY=/work/main/.venv/bin/python
DBPORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
RPORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
cd "$(dirname "$0")"
$PY -m secantus --host 127.0.0.1 --port $DBPORT --storage-path :memory: --oplog-max-entries 1000000 > db-$LABEL.log 2>&1 &
DBPID=$!
$PY receiver.py $RPORT > recv-$LABEL.log 2>&1 &
RPID=$!
URI="mongodb://127.0.0.1:$DBPORT/?directConnection=true"
sleep 4
$PY drive.py "$URI" herald $N $RPORT setup
$BIN serve --mongodb-uri "$URI" --listen 127.0.0.1:0 --ca-file ca.pem \
  --allow-private-networks 127.0.0.0/8 --retry-initial-ms 1000 --retry-max-ms 4000 \
  --retry-max-attempts 4 --attempt-timeout-ms 30000 > herald-$LABEL.log 2>&1 &
HPID=$!
sleep 6
$PY drive.py "$URI" herald $N $RPORT event
START=$(date +%s)
while true; do
  FAILED=$($PY -c "import pymongo;print(pymongo.MongoClient('$URI').herald.deliveries.count_documents({'status':'failed'}))")
  HWM=$(grep VmHWM /proc/$HPID/status | awk '{print $2}')
  RSS=$(grep VmRSS /proc/$HPID/status | awk '{print $2}')
  echo "t=$(( $(date +%s) - START ))s failed=$FAILED VmRSS=${RSS}kB VmHWM=${HWM}kB received=$(curl -sk https://127.0.0.1:$RPORT/)"
  [ "$FAILED" -ge "$N" ] && break
  [ $(( $(date +%s) - START )) -gt 600 ] && echo "gave up" && break
  sleep 3
done
echo "herald peak RSS (VmHWM): $(grep VmHWM /proc/$HPID/status)"
$PY drive.py "$URI" herald $N $RPORT sizes
kill $HPID; sleep 2; kill $RPID $DBPID
