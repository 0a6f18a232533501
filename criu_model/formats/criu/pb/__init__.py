"""Generated from protos/criu/*.proto by scripts/gen_criu_protos; do not edit."""
