// models/data/image_folder.h: a dataset from a folder of PNG files.
//
// Two layouts, like torchvision's ImageFolder:
//   dir/<class>/<image>.png   labelled: classes are the sub-folder names sorted
//                             alphabetically, label = index in that order
//   dir/<image>.png           unlabelled (no sub-folders)
// Files are taken in alphabetical order inside each folder; names starting with '.' and
// files not ending in .png (any case) are ignored. Every image must have the same height,
// width and channel count as the first one (grey and RGB are not mixed silently).
// Captions: when the folder holds a metadata.jsonl (Hugging Face ImageFolder's convention,
// models/data/caption_metadata.h), ds.captions gets one per image from it, found by the
// image's path relative to `dir` ("0001.png", or "<class>/0001.png" in the labelled layout).
#pragma once

#include <string>

#include "models/data/dataset.h"

namespace ddpm {

// IoError naming the folder or the offending file when: the folder is missing, it holds no
// PNG files, PNG files sit beside class sub-folders (ambiguous), a class folder is empty, a
// PNG cannot be read, or an image's size differs from the first one; and the errors of
// read_caption_metadata when metadata.jsonl exists.
Dataset load_image_folder(const std::string& dir);

}  // namespace ddpm
