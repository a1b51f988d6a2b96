"""Data: the shard record, shard writing/reading, the synthetic source and the datamodule."""
