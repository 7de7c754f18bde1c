# Sourced by the lab's guest scripts (fabric-suite.sh, bench-suite.sh) after they set SCRATCH
# (a directory name under the shared lab directory): who this guest is, where it writes, and
# the barrier both guests meet at.
R=$LAB_ROLE            # this guest's role: 1 (host h1) or 2 (host h2)
O=$((3 - R))           # the other guest's
L=$LAB_DIR/$SCRATCH    # shared by both guests (the host's lab directory)
S=/run/vio.sock        # this guest's agent's control socket (the guest's own /run)
export VIO_CONTROL_SOCKET=$S
mkdir -p "$L"

# barrier NAME: waits (up to 5 minutes) until the other guest reached the same barrier.
barrier() {
    touch "$L/$R.$1"
    i=0
    while [ ! -e "$L/$O.$1" ]; do
        sleep 0.1
        i=$((i + 1))
        if [ $i -gt 3000 ]; then echo "BARRIER $1 timed out"; exit 1; fi
    done
}
