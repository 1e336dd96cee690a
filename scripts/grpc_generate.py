#!/usr/bin/python3
"""One baton.v1.Generate call with Debian's python3-grpcio (used by
`make up` and tests). Python stubs are generated from proto/ into a
temporary folder, so nothing generated is kept in the repository."""
import argparse
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_stubs(out):
    proto = os.path.join(ROOT, "proto")
    files = ["common.proto", "generate.proto"]
    subprocess.run(["protoc", "-I", proto, "--python_out=" + out,
                    "--grpc_out=" + out,
                    "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin"] + files,
                   check=True)
    sys.path.insert(0, out)
    import common_pb2
    import generate_pb2
    import generate_pb2_grpc
    return common_pb2, generate_pb2, generate_pb2_grpc


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--target", required=True, help="host:port of the router's gRPC API")
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--ids", action="store_true", help="print the token ids, one line")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--tls-ca", help="PEM CA the router's certificate chains to (turns on TLS)")
    ap.add_argument("--tls-cert", help="PEM client certificate (mTLS)")
    ap.add_argument("--tls-key", help="PEM private key of --tls-cert")
    ap.add_argument("--tls-server-name", help="name to check instead of the target's host")
    args = ap.parse_args()

    import grpc
    with tempfile.TemporaryDirectory() as tmp:
        common, pb, pb_grpc = load_stubs(tmp)
        req = pb.GenerateRequest(model=args.model, prompt=args.prompt)
        req.sampling.max_tokens = args.max_tokens
        req.sampling.temperature = args.temperature
        if args.seed is not None:
            req.sampling.seed = args.seed
        if args.tls_ca or args.tls_cert:
            rd = lambda p: open(p, "rb").read() if p else None
            creds = grpc.ssl_channel_credentials(rd(args.tls_ca), rd(args.tls_key),
                                                 rd(args.tls_cert))
            opts = ([("grpc.ssl_target_name_override", args.tls_server_name)]
                    if args.tls_server_name else None)
            channel = grpc.secure_channel(args.target, creds, options=opts)
        else:
            channel = grpc.insecure_channel(args.target)
        with channel as ch:
            stub = pb_grpc.GenerateStub(ch)
            text, ids, final = [], [], None
            try:
                for msg in stub.Generate(req, timeout=args.timeout):
                    ids.extend(msg.token_ids)
                    text.append(msg.text)
                    if msg.HasField("final"):
                        final = msg.final
            except grpc.RpcError as e:
                print("grpc error: %s: %s" % (e.code().name, e.details()), file=sys.stderr)
                return 1
    if args.ids:
        print(" ".join(str(i) for i in ids))
    else:
        print("".join(text))
        if final is not None:
            print("[finish %s, %d prompt + %d generated tokens]" % (
                common.FinishReason.Name(final.finish_reason), final.usage.prompt_tokens,
                final.usage.completion_tokens))
    return 0 if final is not None else 1


if __name__ == "__main__":
    sys.exit(main())
