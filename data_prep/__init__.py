"""Converters from raw data sources to WebDataset shards (`satdiffmoe prepare SOURCE ...`).

Each source is one module here exposing `add_arguments(parser)` and `convert(args) -> manifest`;
`data_prep.cli` finds them by name. All of them write through `satdiffmoe.data.ShardSetWriter`.
"""
