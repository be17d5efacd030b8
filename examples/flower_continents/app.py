"""FedAvg over Flickr-Mammal with one continent per Flower node, in Flower's simulation engine.

    python -m examples.flower_continents.app SHARD_DIR [--rounds 3] [--out result.json]

Node ``partition-id`` i trains on continent ``names[i]`` (sorted names, logged at start); each
round every node runs one local epoch from the global model and FedAvg averages the results
weighted by sample counts, then every node evaluates the new global model on its continent.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from examples.flower_continents.task import TRANSFORM, Net, evaluate, train
from flickr_mammal.flower import FlowerPartitions, continent_partitions

log = logging.getLogger(__name__)


def client_train(partitions: FlowerPartitions, msg: Message, context: Context) -> Message:
    """One local epoch on this node's continent, from the arrays the server sent."""
    data = partitions.load_partition(int(context.node_config["partition-id"]))
    net = Net()
    net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    torch.manual_seed(int(context.node_config["partition-id"]))
    loss = train(net, data, lr=float(msg.content["config"].get("lr", 0.05)))
    metrics = MetricRecord({"train_loss": loss, "num-examples": len(data)})
    return Message(RecordDict({"arrays": ArrayRecord(net.state_dict()), "metrics": metrics}),
                   reply_to=msg)


def client_evaluate(partitions: FlowerPartitions, msg: Message, context: Context) -> Message:
    """The global model's loss and accuracy on this node's continent."""
    data = partitions.load_partition(int(context.node_config["partition-id"]))
    net = Net()
    net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    loss, accuracy = evaluate(net, data)
    metrics = MetricRecord({"eval_loss": loss, "eval_acc": accuracy, "num-examples": len(data)})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)


def make_client_app(root: str | Path) -> ClientApp:
    partitions = continent_partitions(root, transform=TRANSFORM)
    app = ClientApp()
    app.train()(lambda msg, context: client_train(partitions, msg, context))
    app.evaluate()(lambda msg, context: client_evaluate(partitions, msg, context))
    return app


def make_server_app(num_partitions: int, num_rounds: int, out: Path, seed: int = 0) -> ServerApp:
    """FedAvg over all ``num_partitions`` nodes every round; writes the metrics to ``out``."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        torch.manual_seed(seed)
        strategy = FedAvg(fraction_train=1.0, fraction_evaluate=1.0,
                          min_train_nodes=num_partitions, min_evaluate_nodes=num_partitions,
                          min_available_nodes=num_partitions)
        result = strategy.start(grid=grid, initial_arrays=ArrayRecord(Net().state_dict()),
                                num_rounds=num_rounds, train_config=ConfigRecord({"lr": 0.05}))
        out.write_text(json.dumps({
            "train": {r: dict(m) for r, m in result.train_metrics_clientapp.items()},
            "evaluate": {r: dict(m) for r, m in result.evaluate_metrics_clientapp.items()},
        }, indent=1))

    return app


def run(root: str | Path, num_rounds: int, out: Path) -> dict:
    """Run the simulation (Ray backend, 1 CPU per node) and return the written metrics."""
    from flwr.simulation import run_simulation

    names = continent_partitions(root).names
    print("partition ids:", ", ".join(f"{i}={n}" for i, n in names.items()))
    run_simulation(server_app=make_server_app(len(names), num_rounds, out),
                   client_app=make_client_app(root), num_supernodes=len(names),
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
    return json.loads(out.read_text())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m examples.flower_continents.app",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path, help="shard folder or build root")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("flower_result.json"))
    args = p.parse_args(argv)
    if args.rounds < 1:
        print(f"error: --rounds must be >= 1 (got {args.rounds})", file=sys.stderr)
        return 2
    result = run(args.root, args.rounds, args.out.resolve())
    for rnd, metrics in result["evaluate"].items():
        print(f"round {rnd}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
