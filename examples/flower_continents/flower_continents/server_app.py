"""The ServerApp: FedAvg over every continent each round, weighted by sample counts.

Every continent must have its SuperNode: run the simulation with ``num-supernodes`` equal to the
number of continents in the build (the server checks and names them once at start).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from flickr_mammal.flower import continent_partitions
from flower_continents.task import Net

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    names = continent_partitions(str(cfg["data-dir"])).names
    nodes = len(list(grid.get_node_ids()))
    if nodes != len(names):
        raise ValueError(f"the build has {len(names)} continents but the federation has {nodes} "
                         f"SuperNodes: flwr run . --federation-config 'num-supernodes="
                         f"{len(names)}'")
    torch.manual_seed(int(cfg["seed"]))
    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=nodes,
                      min_evaluate_nodes=nodes, min_available_nodes=nodes)
    result = strategy.start(grid=grid, initial_arrays=ArrayRecord(Net().state_dict()),
                            num_rounds=int(cfg["num-server-rounds"]),
                            train_config=ConfigRecord({"lr": float(cfg["lr"])}))
    metrics = {"partition_ids": {str(i): n for i, n in names.items()},
               "train": {str(r): dict(m) for r, m in result.train_metrics_clientapp.items()},
               "evaluate": {str(r): dict(m)
                            for r, m in result.evaluate_metrics_clientapp.items()}}
    if cfg.get("out"):
        Path(str(cfg["out"])).write_text(json.dumps(metrics, indent=1))
