#!/usr/bin/env python3
"""Per-prompt statistics of ddpm-sample's output for a text-conditioned model (stdlib only).

    python3 scripts/prompt_stats.py OUT [--relabel CLASSES.npz]

OUT is a ddpm-sample folder (samples.npz and sample_info.json with "prompts"); sample i was
drawn from prompt labels[i]. Prints, per prompt, the number of samples and their mean
intensity (0..255, every pixel and channel), which is what the generated captions' "dark" and
"light" measure (models/data/captions.h). With --relabel it also writes a copy of samples.npz
whose labels are the Fashion-MNIST class each prompt names (the longest class name found in
it), for `ddpm-eval class-accuracy`.
"""
import ast
import json
import struct
import sys
import zipfile

# Fashion-MNIST's class names as the caption generator writes them (caption_class_name).
CLASSES = ["t-shirt or top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
           "ankle boot"]


def read_npy(b):
    assert b[:6] == b"\x93NUMPY", "not a .npy member"
    if b[6] == 1:
        hlen, off = struct.unpack("<H", b[8:10])[0], 10
    else:
        hlen, off = struct.unpack("<I", b[8:12])[0], 12
    return ast.literal_eval(b[off:off + hlen].decode("latin1")), b[off + hlen:]


def write_npy(header, data):
    h = repr(header).encode("latin1")
    h += b" " * (64 - (10 + len(h) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + data


def main():
    folder = sys.argv[1]
    prompts = json.load(open(folder + "/sample_info.json"))["prompts"]
    z = zipfile.ZipFile(folder + "/samples.npz")
    ih, img = read_npy(z.read("arr_0.npy"))  # images [N, H, W, C] uint8
    lh, lab = read_npy(z.read("arr_1.npy"))  # labels [N]: the prompt index
    n = ih["shape"][0]
    per = len(img) // n
    fmt = {"<i8": "q", "<f8": "d", "<i4": "i"}[lh["descr"]]
    labels = [int(v) for v in struct.unpack("<%d%s" % (n, fmt), lab[:n * struct.calcsize(fmt)])]
    means = {}
    for i in range(n):
        means.setdefault(labels[i], []).append(sum(img[i * per:(i + 1) * per]) / per)
    for k, p in enumerate(prompts):
        v = means.get(k, [])
        print("%-28s n=%4d  mean intensity %.1f" % (p, len(v), sum(v) / max(1, len(v))))
    if len(sys.argv) > 3 and sys.argv[2] == "--relabel":
        named = [max((c for c in range(10) if CLASSES[c] in prompts[k]), key=lambda c: len(CLASSES[c]))
                 for k in labels]
        with zipfile.ZipFile(sys.argv[3], "w") as out:
            out.writestr("arr_0.npy", write_npy(ih, img))
            out.writestr("arr_1.npy", write_npy({"descr": "<i8", "fortran_order": False, "shape": (n,)},
                                                struct.pack("<%dq" % n, *named)))


if __name__ == "__main__":
    main()
