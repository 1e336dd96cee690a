#!/usr/bin/python3
"""Interoperability of common/rpc with Python grpcio (Debian's python3-grpcio).

1. Python client -> the C echo server (rpc_echo_server, built on common/rpc):
   unary, server streaming, bidirectional, deadline, client cancel seen by
   the handler, message over the limit, garbage bytes, unknown method,
   health Check and Watch, graceful SIGTERM.
2. The C client (rpc_interop_client) -> a Python grpcio server: unary,
   streaming, deadline, error status.

Stubs are generated from proto/ at test time into a temporary folder.
Usage: test_rpc_interop.py SERVER_EXE CLIENT_EXE PROTO_DIR
"""
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

SERVER_EXE, CLIENT_EXE, PROTO_DIR = sys.argv[1:4]
MAX_MESSAGE = 65536
failures = []
procs = []


def check(cond, what):
    print(("ok " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def gen_stubs(out):
    protos = [os.path.join(PROTO_DIR, p) for p in sorted(os.listdir(PROTO_DIR))
              if p.endswith(".proto")]
    plugin = "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin"
    subprocess.run(["protoc", "--proto_path=" + PROTO_DIR, "--python_out=" + out,
                    "--grpc_out=" + out, plugin] + protos, check=True, timeout=60)
    hdir = os.path.join(PROTO_DIR, "grpc", "health", "v1")
    subprocess.run(["protoc", "--proto_path=" + hdir, "--python_out=" + out,
                    "--grpc_out=" + out, plugin, os.path.join(hdir, "health.proto")],
                   check=True, timeout=60)


def start_server():
    p = subprocess.Popen([SERVER_EXE, "--max-message", str(MAX_MESSAGE),
                          "--grace-ms", "1000"],
                         stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    procs.append(p)
    line = p.stdout.readline()
    if not line.startswith("PORT "):
        raise RuntimeError("server did not start: %r" % line)
    return p, int(line.split()[1])


def python_client_to_c_server(grpc, pb):
    generate_pb2, generate_pb2_grpc, registry_pb2, registry_pb2_grpc, \
        health_pb2, health_pb2_grpc, common_pb2 = pb
    server, port = start_server()
    target = "127.0.0.1:%d" % port
    ch = grpc.insecure_channel(target, options=[
        ("grpc.max_send_message_length", 8 * 1024 * 1024)])
    grpc.channel_ready_future(ch).result(timeout=10)
    gen = generate_pb2_grpc.GenerateStub(ch)

    def stats():
        return list(gen.Tokenize(generate_pb2.TokenizeRequest(prompt="stats"),
                                 timeout=5).token_ids)

    # unary with metadata
    r = gen.Tokenize(generate_pb2.TokenizeRequest(model="m", prompt="abc"),
                     metadata=[("authorization", "Bearer xyz")], timeout=5)
    check(list(r.token_ids) == [97, 98, 99] and r.max_context == len("Bearer xyz"),
          "unary Tokenize echo and metadata")
    r = gen.ListModels(generate_pb2.ListModelsRequest(), timeout=5)
    check([m.name for m in r.models] == ["echo"], "unary ListModels")

    # server streaming
    req = generate_pb2.GenerateRequest(
        model="m", prompt="x", sampling=common_pb2.SamplingParams(max_tokens=200))
    msgs = list(gen.Generate(req, timeout=10))
    toks = [m.token_ids[0] for m in msgs if len(m.token_ids) == 1]
    final = msgs[-1]
    check(toks == list(range(200)) and final.HasField("final")
          and final.final.usage.completion_tokens == 200
          and final.final.finish_reason == common_pb2.FINISH_REASON_LENGTH,
          "server streaming Generate 200 messages + final")

    # bidirectional
    reg = registry_pb2_grpc.RegistryStub(ch)

    def node_msgs():
        yield registry_pb2.NodeMessage(hello=registry_pb2.NodeHello(node_id="n-1234"))
        for i in range(1, 6):
            yield registry_pb2.NodeMessage(
                status=registry_pb2.NodeStatus(running_sequences=i))
    acks = [m.ack.command_id for m in reg.Register(node_msgs(), timeout=10)]
    check(acks == [6, 1, 2, 3, 4, 5], "bidirectional Register echo (%s)" % acks)

    # deadline
    t0 = time.time()
    try:
        gen.Tokenize(generate_pb2.TokenizeRequest(prompt="sleep:3000"), timeout=0.2)
        check(False, "deadline exceeded")
    except grpc.RpcError as e:
        dt = time.time() - t0
        check(e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and dt < 2,
              "deadline exceeded (%.2f s)" % dt)

    # client cancel, seen by the handler (cancels_seen is ids[4])
    before = stats()[4]
    fut = gen.Tokenize.future(generate_pb2.TokenizeRequest(prompt="never"))
    time.sleep(0.2)
    fut.cancel()
    deadline = time.time() + 5
    while stats()[4] < before + 1 and time.time() < deadline:
        time.sleep(0.05)
    check(stats()[4] == before + 1, "unary client cancel seen by the handler")

    before = stats()[4]
    it = gen.Generate(generate_pb2.GenerateRequest(prompt="forever"), timeout=30)
    got = 0
    for _ in it:
        got += 1
        if got == 20:
            it.cancel()
            break
    deadline = time.time() + 5
    while stats()[4] < before + 1 and time.time() < deadline:
        time.sleep(0.05)
    check(got == 20 and stats()[4] == before + 1,
          "streaming client cancel seen by the handler")

    # over the message limit
    try:
        gen.Tokenize(generate_pb2.TokenizeRequest(prompt="z" * (MAX_MESSAGE + 10)),
                     timeout=5)
        check(False, "message over the limit")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED,
              "message over the limit -> RESOURCE_EXHAUSTED (%s)" % e.code())

    # garbage bytes through a generic call with identity serializers
    raw = ch.unary_unary("/baton.v1.Generate/Tokenize")
    try:
        raw(b"\x0a\xff\xff\xff\xff\x0f", timeout=5)
        check(False, "truncated bytes")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.INVALID_ARGUMENT,
              "undecodable bytes -> INVALID_ARGUMENT (%s)" % e.details())
    rng = random.Random(7)
    codes = set()
    for _ in range(50):
        try:
            raw(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))),
                timeout=5)
            codes.add("OK")
        except grpc.RpcError as e:
            codes.add(e.code().name)
    check(codes <= {"OK", "INVALID_ARGUMENT"} and "INVALID_ARGUMENT" in codes,
          "50 random byte messages -> INVALID_ARGUMENT or OK (%s)" % sorted(codes))

    # unknown method and service
    for path in ("/baton.v1.Generate/Nope", "/no.such.Service/Call"):
        try:
            ch.unary_unary(path)(b"", timeout=5)
            check(False, "unknown method " + path)
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.UNIMPLEMENTED,
                  "unknown method %s -> UNIMPLEMENTED" % path)

    # health
    health = health_pb2_grpc.HealthStub(ch)
    SERVING = health_pb2.HealthCheckResponse.SERVING
    r = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    check(r.status == SERVING, "health Check '' SERVING")
    r = health.Check(health_pb2.HealthCheckRequest(service="baton.v1.Generate"),
                     timeout=5)
    check(r.status == SERVING, "health Check baton.v1.Generate SERVING")
    try:
        health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
        check(False, "health Check unknown service")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.NOT_FOUND, "health Check unknown -> NOT_FOUND")
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
    first = next(watch)
    check(first.status == SERVING, "health Watch first status SERVING")

    # still serving after all that; then SIGTERM ends the watch and exits 0
    r = gen.Tokenize(generate_pb2.TokenizeRequest(prompt="ok"), timeout=5)
    check(list(r.token_ids) == [111, 107], "server still serving")
    server.send_signal(signal.SIGTERM)
    statuses = []
    try:
        for m in watch:
            statuses.append(m.status)
    except grpc.RpcError as e:
        statuses.append(e.code().name)
    check(health_pb2.HealthCheckResponse.NOT_SERVING in statuses,
          "health Watch sees NOT_SERVING on shutdown (%s)" % statuses)
    try:
        rc = server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        rc = None
    check(rc == 0, "SIGTERM: graceful exit 0 (rc %s)" % rc)
    ch.close()


def c_client_to_python_server(grpc, pb):
    generate_pb2, generate_pb2_grpc = pb[0], pb[1]
    common_pb2 = pb[6]

    class Gen(generate_pb2_grpc.GenerateServicer):
        def Tokenize(self, request, context):
            if request.prompt == "sleep":
                time.sleep(2)
            if request.prompt == "fail":
                context.abort(grpc.StatusCode.NOT_FOUND, "no such model")
            md = dict(context.invocation_metadata())
            if md.get("authorization") != "Bearer interop":
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad token")
            return generate_pb2.TokenizeResponse(
                token_ids=list(request.prompt.encode()))

        def Generate(self, request, context):
            n = request.sampling.max_tokens
            for i in range(n):
                yield generate_pb2.GenerateResponse(token_ids=[i], text="t%d" % i)
            yield generate_pb2.GenerateResponse(final=generate_pb2.GenerateFinal(
                finish_reason=common_pb2.FINISH_REASON_LENGTH,
                usage=common_pb2.Usage(completion_tokens=n)))

    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    generate_pb2_grpc.add_GenerateServicer_to_server(Gen(), srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    try:
        p = subprocess.run([CLIENT_EXE, "ipv4:127.0.0.1:%d" % port],
                           capture_output=True, text=True, timeout=60)
        sys.stdout.write(p.stdout)
        sys.stderr.write(p.stderr)
        check(p.returncode == 0, "C client -> Python server (rc %d)" % p.returncode)
    finally:
        srv.stop(0)


def main():
    sys.path.insert(0, "/usr/lib/python3/dist-packages")
    import grpc  # noqa: E402  (Debian's python3-grpcio)
    tmp = tempfile.mkdtemp(prefix="bt-interop-")
    watchdog = threading.Timer(100, lambda: os._exit(3))
    watchdog.daemon = True
    watchdog.start()
    try:
        gen_stubs(tmp)
        sys.path.insert(0, tmp)
        import common_pb2, generate_pb2, generate_pb2_grpc  # noqa: E401
        import registry_pb2, registry_pb2_grpc, health_pb2, health_pb2_grpc  # noqa
        pb = (generate_pb2, generate_pb2_grpc, registry_pb2, registry_pb2_grpc,
              health_pb2, health_pb2_grpc, common_pb2)
        python_client_to_c_server(grpc, pb)
        c_client_to_python_server(grpc, pb)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print("%d interop check(s) failed: %s" % (len(failures), failures))
        return 1
    print("all interop checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
