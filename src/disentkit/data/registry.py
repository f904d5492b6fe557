"""Every real dataset file disentkit knows: URLs (mirrors in order), sizes and checksums, with sources.

This is the one place where published facts about dataset files live. Each fact says where it comes
from. A file with several known-good checksums accepts any of them (the MPI3D ``real`` file was
replaced in 2025); a file with no published checksum (3D Chairs, MPI3D-complex, the 2025 MPI3D
``real``) is pinned once it has converted: its sha256 is recorded beside the file and checked from then on.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RemoteFile:
    """One published file: where to get it and how to recognise the right bytes."""

    filename: str
    urls: tuple[str, ...]
    size: int | None = None                 # bytes; None where no size is published
    checksums: tuple[str, ...] = ()         # "md5:<hex>" / "sha256:<hex>"; any one matching accepts the file
    source: str = ""                        # where the size / checksums were read
    manual: str = ""                        # extra instructions when automatic download usually fails


@dataclass(frozen=True)
class DatasetSource:
    """A real dataset: the files it needs and what the converted cache holds."""

    name: str
    description: str
    num_images: int
    image_shape: tuple[int, int, int]       # (H, W, C) of the converted images
    homepage: str
    license: str
    files: tuple[RemoteFile, ...]
    alternatives: tuple[RemoteFile, ...] = field(default=())   # other accepted formats (dSprites HDF5)
    has_factors: bool = True

    @property
    def download_bytes(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[arg-type]

    @property
    def cache_bytes(self) -> int:
        h, w, c = self.image_shape
        return self.num_images * h * w * c

    def file_named(self, filename: str) -> RemoteFile | None:
        for f in self.files + self.alternatives:
            if f.filename == filename:
                return f
        return None


# --------------------------------------------------------------------------------------- dSprites
_DSPRITES_GH = "https://github.com/google-deepmind/dsprites-dataset/raw/master/"
_DSPRITES_NPZ = RemoteFile(
    "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
    urls=(_DSPRITES_GH + "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
          "https://raw.githubusercontent.com/google-deepmind/dsprites-dataset/"
          "fa310c66517cfc1939d77fe17c725154efc97127/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"),
    size=None,
    checksums=("md5:7da33b31b13a06f4b04a70402ce90c2e",),
    source="md5 as pinned by several public loaders (e.g. the deepmind/dsprites-dataset raw file at commit "
           "fa310c66517cfc1939d77fe17c725154efc97127); no size is published",
)
_DSPRITES_HDF5 = RemoteFile(
    "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5",
    urls=(_DSPRITES_GH + "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5",
          "https://github.com/deepmind/dsprites-dataset/blob/master/"
          "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5?raw=true"),
    size=28_024_106,
    checksums=("sha256:729fa22e884c9c500e1f17415d580746b4c5894fbbb780a1319bbcfa39a745bb",),
    source="tensorflow/datasets url_checksums/dsprites.txt",
)

# --------------------------------------------------------------------------------------- Shapes3D
_SHAPES3D = RemoteFile(
    "3dshapes.h5",
    urls=("https://storage.googleapis.com/3d-shapes/3dshapes.h5",),
    size=267_573_662,
    checksums=("sha256:0a0f6ed98baff276a50f3a081a7434d788da63cb135a98189b2a5b5769be1785",),
    source="tensorflow/datasets url_checksums/shapes3d.txt",
)

# --------------------------------------------------------------------------------------- MPI3D
_MPI3D_HF = "https://huggingface.co/datasets/waleedgondal/mpi3d/resolve/main/"   # mirror seen in public scripts
_MPI3D_GCS = "https://storage.googleapis.com/disentanglement_dataset/Final_Dataset/"  # original host (often dead)
_MPI3D_MD5_SOURCE = ("md5 of the original Google Cloud Storage release as pinned by nmichlo/disent "
                     "(mpi3d.py, 'full' hash) and by other public loaders")


def _mpi3d_file(variant: str, md5: str | None) -> RemoteFile:
    return RemoteFile(
        f"mpi3d_{variant}.npz",
        urls=(_MPI3D_HF + f"mpi3d_{variant}.npz", _MPI3D_GCS + f"mpi3d_{variant}.npz"),
        size=None,
        checksums=(f"md5:{md5}",) if md5 else (),
        source=_MPI3D_MD5_SOURCE if md5 else "no published checksum",
        manual="" if variant != "real" else
        "the 'real' file was replaced in 2025; the replacement has no published checksum, so a file that "
        "converts is pinned by its sha256 at first import",
    )


_MPI3D_TOY = _mpi3d_file("toy", "55889cb7c7dfc655d6e0277beee88868")
_MPI3D_REALISTIC = _mpi3d_file("realistic", "59a6225b88b635365f70c91b3e52f70f")
_MPI3D_REAL = _mpi3d_file("real", "0f33f609918fb5c97996692f91129802")
_MPI3D_COMPLEX = RemoteFile(
    "real3d_complicated_shapes_ordered.npz",
    urls=("https://drive.google.com/uc?export=download&confirm=t&id=1Tp8eTdHxgUMtsZv5uAoYAbJR1BOa_OQm",),
    size=None,
    checksums=(),
    source="link from rr-learning/disentanglement_dataset (README, MPI3D-complex); no published checksum",
    manual="Google Drive may answer with a warning page instead of the file: download it in a browser "
           "and use `disentkit datasets import mpi3d_complex --from-file PATH`",
)

# --------------------------------------------------------------------------------------- SmallNORB
_NORB_URL = "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/"
_NORB_SOURCE = "tensorflow/datasets url_checksums/smallnorb.txt"
_NORB = tuple(
    RemoteFile(name, urls=(_NORB_URL + name,), size=size, checksums=(f"sha256:{sha}",), source=_NORB_SOURCE)
    for name, size, sha in (
        ("smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat.gz", 131_896_188,
         "5ffd6272a07d32695ee1082a26a41a93a37aab8c28da047f8c34ed348d214873"),
        ("smallnorb-5x46789x9x18x6x2x96x96-training-cat.mat.gz", 348,
         "2784e542c1922060691090952b6cd6278879a216c90f81476f0f00256d42cdaa"),
        ("smallnorb-5x46789x9x18x6x2x96x96-training-info.mat.gz", 71_052,
         "de7eb932ebe7a4ee16217fead60660d0eb3d23632c2f4d1c51f88c501c17bf32"),
        ("smallnorb-5x01235x9x18x6x2x96x96-testing-dat.mat.gz", 130_799_817,
         "cf7104eed3e51174d2f65b66d1e5878b9da233b886f161b0d88f4510ba2c7474"),
        ("smallnorb-5x01235x9x18x6x2x96x96-testing-cat.mat.gz", 347,
         "ecaf6d5bb8c3bc5eab9cf0258f6d2198dd474e016e374836fc097f2e5ff509ff"),
        ("smallnorb-5x01235x9x18x6x2x96x96-testing-info.mat.gz", 10_428,
         "16adf314226327ee006d1a44db8cfef52773c06c829951d5653a9f6f310248a2"),
    )
)

# --------------------------------------------------------------------------------------- Cars3D
_CARS3D = RemoteFile(
    "nips2015-analogy-data.tar.gz",
    urls=("http://www.scottreed.info/files/nips2015-analogy-data.tar.gz",),
    size=None,
    checksums=(),
    source="URL from disentanglement_lib bin/dlib_download_data; no published size or checksum",
)

# --------------------------------------------------------------------------------------- CelebA, 3D Chairs
_CELEBA = RemoteFile(
    "img_align_celeba.zip",
    urls=("https://drive.google.com/uc?export=download&id=0B7EVK8r0v71pZjFTYXZWM3FlRnM",),
    size=1_443_490_838,
    checksums=("md5:00d2c5bc6d35e252742224ab0c1e8fcb",
               "sha256:46fb89443c578308acf364d7d379fe1b9efb793042c0af734b6112e4fd3a8c74"),
    source="md5: the CelebA release as pinned by public loaders (issue 3); size and sha256: "
           "tensorflow/datasets url_checksums/celeb_a.txt",
    manual="Google Drive often answers with a quota page instead of the file: download img_align_celeba.zip "
           "from the CelebA page (https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html) in a browser and use "
           "`disentkit datasets import celeba --from-file PATH`",
)
_CHAIRS = RemoteFile(
    "rendered_chairs.tar",
    urls=("https://www.di.ens.fr/willow/research/seeing3Dchairs/data/rendered_chairs.tar",),
    size=None,
    checksums=(),
    source="ENS Willow 'Seeing 3D chairs' project page; no published checksum (sha256 recorded once it converts)",
)


SOURCES: dict[str, DatasetSource] = {s.name: s for s in (
    DatasetSource("dsprites", "dSprites (Matthey et al. 2017): 2D shapes, 5 factors; the real file",
                  737_280, (64, 64, 1), "https://github.com/google-deepmind/dsprites-dataset", "Apache-2.0",
                  (_DSPRITES_NPZ,), alternatives=(_DSPRITES_HDF5,)),
    DatasetSource("shapes3d", "3D Shapes (Burgess & Kim 2018): 6 factors, rendered scenes",
                  480_000, (64, 64, 3), "https://github.com/google-deepmind/3d-shapes", "Apache-2.0", (_SHAPES3D,)),
    DatasetSource("mpi3d_toy", "MPI3D toy (Gondal et al. 2019): simple renderings, 7 factors",
                  1_036_800, (64, 64, 3), "https://github.com/rr-learning/disentanglement_dataset", "CC-BY-4.0",
                  (_MPI3D_TOY,)),
    DatasetSource("mpi3d_realistic", "MPI3D realistic: realistic renderings of the robot platform, 7 factors",
                  1_036_800, (64, 64, 3), "https://github.com/rr-learning/disentanglement_dataset", "CC-BY-4.0",
                  (_MPI3D_REALISTIC,)),
    DatasetSource("mpi3d_real", "MPI3D real: camera images of the robot platform, 7 factors",
                  1_036_800, (64, 64, 3), "https://github.com/rr-learning/disentanglement_dataset", "CC-BY-4.0",
                  (_MPI3D_REAL,)),
    DatasetSource("mpi3d_complex", "MPI3D-complex: real images of complex everyday objects, 7 factors",
                  460_800, (64, 64, 3), "https://github.com/rr-learning/disentanglement_dataset", "CC-BY-4.0",
                  (_MPI3D_COMPLEX,)),
    DatasetSource("smallnorb", "SmallNORB (LeCun et al. 2004): toys, train+test, left camera, 64x64",
                  48_600, (64, 64, 1), "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/",
                  "research use (see homepage)", _NORB),
    DatasetSource("cars3d", "Cars3D (Reed et al. 2015): 183 car models x 24 azimuths x 4 elevations, 64x64",
                  17_568, (64, 64, 3), "http://www.scottreed.info/", "research use (see homepage)", (_CARS3D,)),
    DatasetSource("celeba", "CelebA aligned faces, center-cropped to 64x64; no ground-truth factors",
                  202_599, (64, 64, 3), "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html",
                  "non-commercial research (see homepage)", (_CELEBA,), has_factors=False),
    DatasetSource("chairs", "3D Chairs (Aubry et al. 2014): 1,393 chairs x 62 views, 64x64; no factors",
                  86_366, (64, 64, 3), "https://www.di.ens.fr/willow/research/seeing3Dchairs/",
                  "research use (see homepage)", (_CHAIRS,), has_factors=False),
)}
