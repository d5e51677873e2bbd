# FindCUDNN: locates cuDNN 9 (header cudnn.h, library libcudnn) and defines CUDNN::cudnn.
#
# Looks next to the CUDA toolkit first (its lib/ and lib64/; on the project's machines
# the libraries sit in lib/), then in the usual system places. CUDNN_ROOT overrides.
#   CUDNN_FOUND, CUDNN_INCLUDE_DIR, CUDNN_LIBRARY, CUDNN_VERSION
include(FindPackageHandleStandardArgs)

set(_cudnn_hints ${CUDNN_ROOT} $ENV{CUDNN_ROOT})
if(CUDAToolkit_LIBRARY_ROOT)
  list(APPEND _cudnn_hints ${CUDAToolkit_LIBRARY_ROOT})
endif()
if(CUDAToolkit_BIN_DIR)
  get_filename_component(_cuda_root ${CUDAToolkit_BIN_DIR} DIRECTORY)
  list(APPEND _cudnn_hints ${_cuda_root})
endif()

find_path(CUDNN_INCLUDE_DIR cudnn.h
  HINTS ${_cudnn_hints} PATH_SUFFIXES include targets/x86_64-linux/include)
find_library(CUDNN_LIBRARY cudnn
  HINTS ${_cudnn_hints} PATH_SUFFIXES lib lib64 lib/x64 targets/x86_64-linux/lib)

if(CUDNN_INCLUDE_DIR)
  set(_ver_file ${CUDNN_INCLUDE_DIR}/cudnn_version.h)
  if(EXISTS ${_ver_file})
    file(STRINGS ${_ver_file} _major REGEX "^#define CUDNN_MAJOR [0-9]+")
    file(STRINGS ${_ver_file} _minor REGEX "^#define CUDNN_MINOR [0-9]+")
    file(STRINGS ${_ver_file} _patch REGEX "^#define CUDNN_PATCHLEVEL [0-9]+")
    string(REGEX MATCH "[0-9]+$" _major "${_major}")
    string(REGEX MATCH "[0-9]+$" _minor "${_minor}")
    string(REGEX MATCH "[0-9]+$" _patch "${_patch}")
    set(CUDNN_VERSION "${_major}.${_minor}.${_patch}")
  endif()
endif()

find_package_handle_standard_args(CUDNN
  REQUIRED_VARS CUDNN_LIBRARY CUDNN_INCLUDE_DIR
  VERSION_VAR CUDNN_VERSION)

if(CUDNN_FOUND AND NOT TARGET CUDNN::cudnn)
  add_library(CUDNN::cudnn UNKNOWN IMPORTED)
  set_target_properties(CUDNN::cudnn PROPERTIES
    IMPORTED_LOCATION ${CUDNN_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${CUDNN_INCLUDE_DIR})
endif()
mark_as_advanced(CUDNN_INCLUDE_DIR CUDNN_LIBRARY)
