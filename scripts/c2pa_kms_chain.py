"""Issue the certificate chain for a deployment's KMS signing key and store it.

    PYTHONPATH=functions python scripts/c2pa_kms_chain.py --key-id <C2paSigningKeyArn> \
        --secret-id <C2paChainSecretArn> --ca-out voxproof-ca.pem

Reads the key's public key (kms:GetPublicKey), makes a CA and a C2PA signing certificate for that
public key (voxproof.credentials.kms.issue_chain; the CA's private key is never written), puts
the chain (signing certificate, then CA) into the secret, and writes the CA certificate for
readers to trust. Run it once after the first deploy, and again after replacing the key.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import boto3
from voxproof.credentials.kms import issue_chain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key-id", required=True)
    parser.add_argument("--secret-id", help="Secrets Manager secret for the chain")
    parser.add_argument("--parameter", help="...or an SSM parameter")
    parser.add_argument("--ca-out", type=Path, required=True)
    parser.add_argument("--org", default="voxproof")
    args = parser.parse_args()
    if bool(args.secret_id) == bool(args.parameter):
        parser.error("give exactly one of --secret-id or --parameter")
    public = boto3.client("kms").get_public_key(KeyId=args.key_id)["PublicKey"]
    chain, ca = issue_chain(public, org=args.org)
    if args.secret_id:
        boto3.client("secretsmanager").put_secret_value(SecretId=args.secret_id,
                                                        SecretString=chain.decode())
    else:
        boto3.client("ssm").put_parameter(Name=args.parameter, Value=chain.decode(),
                                          Type="String", Overwrite=True)
    args.ca_out.write_bytes(ca)
    print(f"stored the chain for {args.key_id}; CA certificate in {args.ca_out}")


if __name__ == "__main__":
    main()
