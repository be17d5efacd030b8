"""The ClientApp: SuperNode ``partition-id`` i trains on continent ``names[i]`` (sorted continent
names, as :func:`flickr_mammal.flower.continent_partitions` numbers them) and evaluates the global
model on the same continent's held-out ``val`` split."""

from __future__ import annotations

from functools import cache

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from flickr_mammal.flower import FlowerPartitions, continent_partitions
from flower_continents.task import TRANSFORM, Net, evaluate, train

app = ClientApp()


@cache
def partitions(data_dir: str, split: str) -> FlowerPartitions:
    """Opened once per process: the simulation reuses a ClientApp process across rounds."""
    if not data_dir:
        raise ValueError("set the build folder: flwr run . --run-config 'data-dir=\"DIR\"'")
    return continent_partitions(data_dir, split=split, transform=TRANSFORM)


def _net(msg: Message) -> Net:
    net = Net()
    net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    return net


@app.train()
def client_train(msg: Message, context: Context) -> Message:
    """Local epochs on this node's continent, from the arrays the server sent."""
    pid = int(context.node_config["partition-id"])
    data = partitions(str(context.run_config["data-dir"]), "train").load_partition(pid)
    net = _net(msg)
    config = msg.content["config"]
    torch.manual_seed(int(context.run_config["seed"]) * 1000 + pid * 100
                      + int(config.get("server-round", 0)))
    loss = train(net, data, epochs=int(context.run_config["local-epochs"]),
                 lr=float(config.get("lr", context.run_config["lr"])))
    metrics = MetricRecord({"train_loss": loss, "num-examples": len(data)})
    return Message(RecordDict({"arrays": ArrayRecord(net.state_dict()), "metrics": metrics}),
                   reply_to=msg)


@app.evaluate()
def client_evaluate(msg: Message, context: Context) -> Message:
    """The global model's loss and accuracy on this node's held-out continent data."""
    pid = int(context.node_config["partition-id"])
    data = partitions(str(context.run_config["data-dir"]), "val").load_partition(pid)
    loss, accuracy = evaluate(_net(msg), data)
    metrics = MetricRecord({"eval_loss": loss, "eval_acc": accuracy, "num-examples": len(data)})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
