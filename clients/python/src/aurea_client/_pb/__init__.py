"""Generated from protos/aurea/v1 by clients/python/gen_protos.sh; never edited."""
