"""Generated protobuf modules (scripts/gen_protos). Do not edit by hand."""
