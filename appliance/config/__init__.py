"""Configuration: schema, layered loader and dump."""

from appliance.config.loader import dump_config, load_config
from appliance.config.schema import KioskConfig, NodeConfig

__all__ = ["KioskConfig", "NodeConfig", "dump_config", "load_config"]
