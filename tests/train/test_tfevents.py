#!/usr/bin/env python3
"""Reads what tests/train/tfevents_write.c wrote with readers that share no code with gpu/:
the TensorBoard event file with python3-crc32c (every record's two masked CRCs) and
python3-protobuf (Event and Summary built at run time from descriptors, as TensorBoard's
event.proto and summary.proto number their fields), compared value by value with
metrics.tsv; loss.svg with an XML parser; trainer_state.json with json.

usage: test_tfevents.py TFEVENTS_WRITE
       test_tfevents.py --folder DIR EVENTS   (a run's folder, e.g. train/<job>/)
"""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

try:
    import crc32c
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
except ImportError as e:
    print("skip: %s (install python3-crc32c python3-protobuf)" % e)
    sys.exit(77)


def message_classes():
    fdp = descriptor_pb2.FileDescriptorProto(name="llmfs_tb_test.proto", package="tbtest",
                                             syntax="proto3")
    F = descriptor_pb2.FieldDescriptorProto
    summary = fdp.message_type.add(name="Summary")
    value = summary.nested_type.add(name="Value")
    value.field.add(name="tag", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    value.field.add(name="simple_value", number=2, type=F.TYPE_FLOAT, label=F.LABEL_OPTIONAL)
    summary.field.add(name="value", number=1, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                      type_name=".tbtest.Summary.Value")
    event = fdp.message_type.add(name="Event")
    event.field.add(name="wall_time", number=1, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
    event.field.add(name="step", number=2, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    event.field.add(name="file_version", number=3, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    event.field.add(name="summary", number=5, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                    type_name=".tbtest.Summary")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    desc = pool.FindMessageTypeByName("tbtest.Event")
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def masked(data):
    c = crc32c.crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xa282ead8) & 0xffffffff


def records(raw):
    off = 0
    while off < len(raw):
        assert off + 12 <= len(raw), "truncated record header at %d" % off
        head = raw[off:off + 8]
        (n,) = struct.unpack("<Q", head)
        (hcrc,) = struct.unpack("<I", raw[off + 8:off + 12])
        assert hcrc == masked(head), "length CRC at %d" % off
        data = raw[off + 12:off + 12 + n]
        assert len(data) == n, "truncated record at %d" % off
        (dcrc,) = struct.unpack("<I", raw[off + 12 + n:off + 16 + n])
        assert dcrc == masked(data), "data CRC at %d" % off
        yield data
        off += 16 + n


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def check_folder(d, events_name):
    """What must hold of any run's folder: every event record's CRCs, one event a row of
    metrics.tsv with its values, a loss.svg that parses, a trainer_state.json that agrees."""
    Event = message_classes()
    with open(os.path.join(d, "metrics.tsv")) as f:
        lines = f.read().splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, ln.split("\t"))) for ln in lines[1:]]
    with open(os.path.join(d, events_name), "rb") as f:
        events = [Event.FromString(r) for r in records(f.read())]
    assert events[0].file_version == "brain.Event:2", events[0]
    assert len(events) == 1 + len(rows), (len(events), len(rows))
    for ev, row in zip(events[1:], rows):
        vals = {v.tag: v.simple_value for v in ev.summary.value}
        assert ev.step == int(row["step"]), (ev.step, row)
        assert vals["train/loss"] == f32(float(row["train_loss"])), (vals, row)
        assert (row["val_loss"] == "-") == ("eval/loss" not in vals), (vals, row)
    svg = ET.parse(os.path.join(d, "loss.svg")).getroot()
    assert svg.tag == "{http://www.w3.org/2000/svg}svg", svg.tag
    with open(os.path.join(d, "trainer_state.json")) as f:
        state = json.load(f)
    assert state["global_step"] == int(rows[-1]["step"]), state["global_step"]
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert losses == [f32(float(r["train_loss"])) for r in rows]
    print("ok: %s: %d events, every CRC and value as in metrics.tsv" % (d, len(events)))


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--folder":
        return check_folder(sys.argv[2], sys.argv[3])
    Event = message_classes()
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.argv[1], d], check=True)
        with open(os.path.join(d, "metrics.tsv")) as f:
            lines = f.read().splitlines()
        header = lines[0].split("\t")
        assert header[:6] == ["step", "train_loss", "val_loss", "lr", "tokens_per_s",
                              "ms_per_step"], header
        rows = [dict(zip(header, ln.split("\t"))) for ln in lines[1:]]
        assert len(rows) == 12, len(rows)
        with open(os.path.join(d, "events.out.tfevents.0.llmfs"), "rb") as f:
            events = [Event.FromString(r) for r in records(f.read())]
        assert events[0].file_version == "brain.Event:2", events[0]
        assert len(events) == 1 + len(rows), len(events)
        evals = 0
        for ev, row in zip(events[1:], rows):
            assert ev.step == int(row["step"]), (ev.step, row)
            assert ev.wall_time > events[0].wall_time
            vals = {v.tag: v.simple_value for v in ev.summary.value}
            assert vals["train/loss"] == f32(float(row["train_loss"])), (vals, row)
            assert vals["train/learning_rate"] == f32(float(row["lr"])), (vals, row)
            assert abs(vals["tokens_per_s"] - float(row["tokens_per_s"])) <= \
                0.05 + 1e-6 * float(row["tokens_per_s"]), (vals, row)
            if row["val_loss"] == "-":
                assert "eval/loss" not in vals, vals
            else:
                assert vals["eval/loss"] == f32(float(row["val_loss"])), (vals, row)
                evals += 1
        assert evals == 3, evals  # steps 4, 8 and 12

        svg = ET.parse(os.path.join(d, "loss.svg")).getroot()
        ns = "{http://www.w3.org/2000/svg}"
        assert svg.tag == ns + "svg", svg.tag
        lines_ = svg.findall(ns + "polyline")
        assert len(lines_) == 2, lines_
        assert len(lines_[0].get("points").split()) == 12
        assert len(lines_[1].get("points").split()) == 3
        texts = [t.text for t in svg.iter(ns + "text")]
        assert "tiny <run> & co" in texts and "train" in texts and "validation" in texts

        with open(os.path.join(d, "trainer_state.json")) as f:
            state = json.load(f)
        assert state["global_step"] == 12 and state["max_steps"] == 12
        losses = [e["loss"] for e in state["log_history"] if "loss" in e]
        assert losses == [f32(float(r["train_loss"])) for r in rows]
        evl = [e["eval_loss"] for e in state["log_history"] if "eval_loss" in e]
        assert state["best_metric"] == min(evl)
        assert state["num_input_tokens_seen"] == 12 * 2 * 16
    print("ok: %d events, every CRC and value as in metrics.tsv" % len(events))


if __name__ == "__main__":
    main()
