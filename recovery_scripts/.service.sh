# Sourced by the recovery scripts (not one itself: its name starts with a dot).
# rs_service ACTION LABEL: bin/service's ACTION (up, down, restart, refresh) on LABEL.  Run by
# RS, a script asks on its channel to RS (standard input, MINIKERN_RS_CHANNEL=0; the lines are
# minikern/proto/scriptchan.py's): one line out, one line back, no interpreter to start.  Run
# by hand, it uses bin/service.
rs_service() {
    if [ "${MINIKERN_RS_CHANNEL:-}" != 0 ]; then
        "${MINIKERN_PYTHON:-python3}" "$MINIKERN_ROOT/bin/service" --run-dir "$MINIKERN_RUN_DIR" "$1" "$2"
        return
    fi
    printf 'MKSC 1 %s %s\n' "$1" "$2" >&0
    read -r proto version status detail || { echo "RS closed the channel unanswered"; return 1; }
    echo "service $1 $2: $status $detail"
    [ "$proto $version $status" = "MKSC 1 OK" ]
}
