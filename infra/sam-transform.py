#!/usr/bin/env python3
"""Transform the SAM template into the CloudFormation that AWS would deploy, with the
installed aws-sam-translator (pinned in infra/deps.sh), without an AWS account.

    python3 infra/sam-transform.py template.yaml '{"StreamEndpoint": "RestApi"}'

prints the CloudFormation template as JSON on stdout (parameters as given, the others
at their defaults; conditions stay in the output, for CloudFormation to evaluate). Each
function's CodeUri becomes an S3 location, as `sam package` makes it; managed policy
names resolve through a stub, since the real loader asks IAM.
"""
import json
import sys

import samtranslator
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

# The only managed policy the template's functions get: SAM's default for a function role.
MANAGED_POLICIES = {
    "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
}


class PolicyLoader:
    def load(self):
        return MANAGED_POLICIES


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: sam-transform.py TEMPLATE [PARAMETERS_JSON]")
    with open(sys.argv[1]) as f:
        template = yaml_parse(f.read())
    params = json.loads(sys.argv[2]) if len(sys.argv) == 3 else {}
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://sam-transform/bootstrap.zip"
    print("aws-sam-translator", samtranslator.__version__, file=sys.stderr)
    json.dump(transform(template, params, PolicyLoader()), sys.stdout, indent=1, default=str)


if __name__ == "__main__":
    main()
