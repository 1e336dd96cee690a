#!/usr/bin/python3
"""A fixed network delay without sch_netem: a userspace delayer on an
nfnetlink_queue. An iptables NFQUEUE rule (xt_NFQUEUE; nftables' own
`queue` needs nft_queue, which this kernel lacks) hands each matching
packet to this process, which gives the kernel its ACCEPT verdict DELAY_MS
after the packet arrived; the kernel holds the packet until then. Packets
leave in arrival order (one delay for all). Runs inside the namespace whose
queue it serves (`ip netns exec NS nfq_delay.py QUEUE DELAY_MS`); on
SIGTERM or SIGINT it accepts every held packet at once and exits (closing
the socket would drop them).

Raw netlink (NETLINK_NETFILTER, the NFQNL_MSG_* messages of
linux/netfilter/nfnetlink_queue.h), so no library is needed. Prints
"bound" once the queue is bound, so the caller can add the rule after."""
import os
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
MSG_PACKET, MSG_CONFIG, MSG_VERDICT_BATCH = 0, 2, 3
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
CFG_CMD, CFG_PARAMS, CFG_QUEUE_MAXLEN, CFG_MASK, CFG_FLAGS = 1, 2, 3, 4, 5
CMD_BIND = 1
COPY_META = 1
F_FAIL_OPEN, F_GSO = 1, 4      # full queue: accept rather than drop; no segmenting
PACKET_HDR, VERDICT_HDR = 1, 2
NF_ACCEPT = 1


def attr(kind, payload):
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * (-n % 4)


def message(kind, queue, attrs, seq, flags=NLM_F_REQUEST):
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind,
                       flags, seq, 0) + body


def config(sock, queue, attrs, seq):
    """Sends one config message and waits for its ack; raises on an error."""
    sock.send(message(MSG_CONFIG, queue, attrs, seq, NLM_F_REQUEST | NLM_F_ACK))
    while True:
        data = sock.recv(65536)
        off = 0
        while off + 16 <= len(data):
            n, kind, _, s, _ = struct.unpack_from("=IHHII", data, off)
            if kind == NLMSG_ERROR and s == seq:
                err = struct.unpack_from("=i", data, off + 16)[0]
                if err:
                    raise OSError(-err, "nfqueue config: " + os.strerror(-err))
                return
            off += max(16, (n + 3) & ~3)


def packet_ids(data):
    """The packet ids of the NFQNL_MSG_PACKET messages in one read."""
    ids, off = [], 0
    while off + 16 <= len(data):
        n, kind, _, _, _ = struct.unpack_from("=IHHII", data, off)
        if n < 16:
            break
        if kind == (NFNL_SUBSYS_QUEUE << 8) | MSG_PACKET:
            a = off + 20
            while a + 4 <= off + n:
                alen, atype = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if atype & 0x7fff == PACKET_HDR:
                    ids.append(struct.unpack_from(">I", data, a + 4)[0])
                    break
                a += (alen + 3) & ~3
        off += (n + 3) & ~3
    return ids


def main():
    queue, delay = int(sys.argv[1]), float(sys.argv[2]) / 1000.0
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 0))
    # SO_RCVBUFFORCE (root): a burst must not overflow the socket (an
    # overflowed packet is dropped by the kernel, which TCP then resends)
    sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)
    config(sock, queue, attr(CFG_CMD, struct.pack(">BBH", CMD_BIND, 0, 0)), 1)
    config(sock, queue, attr(CFG_PARAMS, struct.pack(">IB", 0, COPY_META)) +
           attr(CFG_QUEUE_MAXLEN, struct.pack(">I", 16384)) +
           attr(CFG_FLAGS, struct.pack(">I", F_FAIL_OPEN | F_GSO)) +
           attr(CFG_MASK, struct.pack(">I", F_FAIL_OPEN | F_GSO)), 2)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    print("bound", flush=True)
    held = []          # (release time, id), in arrival order
    seq = 3
    ppid = os.getppid()
    while True:
        now = time.monotonic()
        if stop or os.getppid() != ppid:
            due = len(held)
        else:
            due = 0
            while due < len(held) and held[due][0] <= now:
                due += 1
        if due:
            # one verdict for every id up to the last due one (ids rise)
            sock.send(message(MSG_VERDICT_BATCH, queue,
                              attr(VERDICT_HDR, struct.pack(">II", NF_ACCEPT,
                                                            held[due - 1][1])), seq))
            seq += 1
            del held[:due]
        if stop or os.getppid() != ppid:
            return
        wait = held[0][0] - now if held else 0.5
        try:
            ready = select.select([sock], [], [], max(0.0, wait))[0]
        except InterruptedError:
            continue
        while ready:
            try:
                data = sock.recv(1 << 20, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError:     # ENOBUFS: those packets were dropped
                continue
            t = time.monotonic() + delay
            held += [(t, i) for i in packet_ids(data)]


if __name__ == "__main__":
    main()
