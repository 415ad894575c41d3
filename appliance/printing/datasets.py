"""The attribute lists of the Print Management requests (PS3.4 H.4, PS3.3 C.13)."""

from __future__ import annotations

from pydicom.dataset import Dataset

from appliance.printing.options import PrintOptions
from appliance.printing.render import PrintPixels
from appliance.printing.sop import BASIC_FILM_SESSION


def film_session_attributes(options: PrintOptions) -> Dataset:
    """Film Session N-CREATE: copies, priority, and medium, destination and label when set."""
    ds = Dataset()
    ds.NumberOfCopies = str(options.copies)
    ds.PrintPriority = options.priority
    if options.medium_type:
        ds.MediumType = options.medium_type
    if options.destination:
        ds.FilmDestination = options.destination
    if options.label:
        ds.FilmSessionLabel = options.label
    return ds


def film_box_attributes(options: PrintOptions, film_session_uid: str) -> Dataset:
    """Film Box N-CREATE: layout, film, densities; printer defaults are simply not sent."""
    ds = Dataset()
    ds.ImageDisplayFormat = options.display_format.text
    ds.FilmOrientation = options.orientation
    ds.FilmSizeID = options.film_size
    optional = {
        "MagnificationType": options.magnification,
        "SmoothingType": options.smoothing,
        "BorderDensity": options.border_density,
        "EmptyImageDensity": options.empty_image_density,
        "Trim": options.trim,
        "ConfigurationInformation": options.configuration_information,
    }
    for keyword, value in optional.items():
        if value:
            setattr(ds, keyword, value)
    if options.max_density is not None:
        ds.MaxDensity = options.max_density
    if options.min_density is not None:
        ds.MinDensity = options.min_density
    session = Dataset()
    session.ReferencedSOPClassUID = BASIC_FILM_SESSION
    session.ReferencedSOPInstanceUID = film_session_uid
    ds.ReferencedFilmSessionSequence = [session]
    return ds


def image_box_attributes(position: int, pixels: PrintPixels, polarity: str) -> Dataset:
    """Image Box N-SET: the position, polarity and the Basic Grayscale or Basic Color Image
    Sequence with the rendered pixels (MONOCHROME2 or RGB by plane; square pixels)."""
    image = Dataset()
    image.SamplesPerPixel = 3 if pixels.color else 1
    image.PhotometricInterpretation = "RGB" if pixels.color else "MONOCHROME2"
    if pixels.color:
        image.PlanarConfiguration = 1
    image.Rows = pixels.rows
    image.Columns = pixels.columns
    image.BitsAllocated = pixels.bits_allocated
    image.BitsStored = pixels.bits
    image.HighBit = pixels.bits - 1
    image.PixelRepresentation = 0
    image.add_new(0x7FE00010, "OB" if pixels.bits_allocated == 8 else "OW", pixels.pixel_data())
    ds = Dataset()
    ds.ImageBoxPosition = position
    ds.Polarity = polarity
    if pixels.color:
        ds.BasicColorImageSequence = [image]
    else:
        ds.BasicGrayscaleImageSequence = [image]
    return ds
