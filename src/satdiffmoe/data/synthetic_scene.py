"""SynthSat's world: a procedural landscape and how it looks on any day.

A `Landscape` holds everything about one place that does not change with time: field parcels on a
slightly rotated grid, their land cover (crop field, forest, meadow, built-up), roads along parcel
edges, an optional river, building footprints with roof colours, and fine textures. Time enters
only through `render(landscape, day)`:

* seasonal change: vegetation colour follows the day of year (each crop by its own phenology,
  forest and meadows by the season) and the sun angle changes the overall brightness;
* discrete change: every field grows one crop per year (a rotation that keeps the crop with
  probability 0.6, so fields drift further apart the more years lie between two dates); some
  parcels change land cover on a conversion day (fields become construction sites or meadows,
  forest is cleared) and some buildings have a construction day.

`sentinel2_bands(rgb)` extends a rendered RGB scene to the 13 Sentinel-2 bands (for multispectral LR
records): B4, B3, B2 are the RGB itself, the other ten are fixed weighted band combinations plus a
vegetation term and an offset (proxies, not a radiative-transfer model).

Day 0 is the HR acquisition. Conversion and construction days are spread uniformly over the whole
±range, so the chance that an LR image shows a different scene than the HR grows with |Δt|: Δt
carries real information. Everything is vectorised numpy; rendering a 64-px scene takes a fraction of a
millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

FIELD, FOREST, MEADOW, BUILT = range(4)
COVER_PROBABILITIES = (0.45, 0.15, 0.12, 0.28)
YEAR = 365.0

# Crops: bare-soil colour, peak-canopy colour, day of year of the peak, half-width of the season (days).
# Rapeseed's "canopy" is its yellow bloom; the last one is clover/grass ley with a long season.
CROP_SOIL = np.array([[0.45, 0.36, 0.27], [0.50, 0.41, 0.31], [0.40, 0.33, 0.26], [0.52, 0.44, 0.32]])
CROP_CANOPY = np.array([[0.30, 0.50, 0.18], [0.20, 0.44, 0.14], [0.82, 0.76, 0.22], [0.28, 0.54, 0.22]])
CROP_PEAK_DOY = np.array([140.0, 215.0, 120.0, 175.0])
CROP_SEASON_DAYS = np.array([45.0, 40.0, 25.0, 80.0])

FOREST_WINTER, FOREST_SUMMER = np.array([0.30, 0.28, 0.22]), np.array([0.09, 0.30, 0.10])
MEADOW_WINTER, MEADOW_SUMMER = np.array([0.46, 0.45, 0.31]), np.array([0.30, 0.56, 0.22])
BUILT_GROUND = np.array([0.56, 0.54, 0.50])
ROAD = np.array([0.40, 0.40, 0.41])
WATER = np.array([0.07, 0.16, 0.26])
ROOFS = np.array([[0.66, 0.30, 0.22], [0.56, 0.56, 0.60], [0.82, 0.80, 0.74], [0.34, 0.32, 0.35]])
# texture strength per land cover: field rows, tree crowns, meadow patches, pavement
TEXTURE_AMPLITUDE = np.array([0.07, 0.28, 0.08, 0.05])
SHADOW = 0.6
CROP_KEPT = 0.6  # chance that a field keeps its crop into the next year
# land-cover conversions (before -> after) and the share of parcels that undergo one in the range
CONVERSIONS = {FIELD: (BUILT, MEADOW), FOREST: (FIELD,), MEADOW: (FIELD, BUILT)}
CONVERTED_SHARE = 0.25


@dataclass
class Landscape:
    """The time-invariant layout of one place (all maps H×W)."""

    parcel: np.ndarray  # int parcel id per pixel
    kind_before: np.ndarray  # land cover per parcel (FIELD, FOREST, MEADOW, BUILT) before its conversion
    kind_after: np.ndarray  # land cover per parcel from its conversion day on
    convert_day: np.ndarray  # per parcel (+inf = never converted)
    brightness: np.ndarray  # per-parcel brightness factor, so neighbouring parcels differ
    phenology_shift: np.ndarray  # per-parcel days added to the crop calendar
    crop_by_year: np.ndarray  # parcels × years crop index (crop rotation)
    first_year: int  # calendar-year offset of crop_by_year[:, 0], relative to the HR's year
    texture_before: np.ndarray  # multiplicative texture (1 ± a few %) per pixel, for kind_before
    texture_after: np.ndarray  # the same for kind_after
    road: np.ndarray  # bool
    water: np.ndarray  # bool
    building: np.ndarray  # building id per pixel, -1 = none
    roof: np.ndarray  # buildings × 3 roof colours
    built_day: np.ndarray  # per building: day it appears (-inf = always there)
    hr_doy: float  # day of year of the HR acquisition (day 0)


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
    return field / (field.std() + 1e-8)


def _cut_positions(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """Parcel boundaries along one axis: parcels 10-24 px wide (real fields at ~2.5 m/px)."""
    widths = rng.uniform(10.0, 24.0, size=int((high - low) / 10.0) + 2)
    return low + rng.uniform(0.0, 10.0) + np.cumsum(widths)


def sample_landscape(rng: np.random.Generator, size: int, hr_doy: float, day_range: float) -> Landscape:
    """Draw a random place of `size`×`size` pixels; buildings may appear within ±`day_range` days."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    angle = rng.uniform(-0.5, 0.5)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    cuts_u = _cut_positions(rng, u.min(), u.max())
    cuts_v = _cut_positions(rng, v.min(), v.max())
    cell = np.searchsorted(cuts_v, v) * (len(cuts_u) + 1) + np.searchsorted(cuts_u, u)
    _, parcel = np.unique(cell, return_inverse=True)
    parcel = parcel.reshape(size, size)
    num_parcels = int(parcel.max()) + 1
    kind_before = rng.choice(len(COVER_PROBABILITIES), size=num_parcels, p=COVER_PROBABILITIES)
    kind_after, convert_day = kind_before.copy(), np.full(num_parcels, np.inf)
    for parcel_id in np.flatnonzero(rng.random(num_parcels) < CONVERTED_SHARE):
        options = CONVERSIONS.get(int(kind_before[parcel_id]))
        if options:
            kind_after[parcel_id] = options[rng.integers(len(options))]
            convert_day[parcel_id] = rng.uniform(-day_range, day_range)

    # roads run along a third of the parcel boundaries
    road_cuts_u, road_cuts_v = cuts_u[rng.random(len(cuts_u)) < 0.35], cuts_v[rng.random(len(cuts_v)) < 0.35]
    half_width = rng.uniform(0.6, 1.1)
    road = np.zeros((size, size), bool)
    for coord, cuts in ((u, road_cuts_u), (v, road_cuts_v)):
        if len(cuts):
            road |= np.abs(coord[..., None] - cuts).min(-1) < half_width

    water = np.zeros((size, size), bool)
    if rng.random() < 0.35:  # a meandering river across the scene
        river_angle = rng.uniform(0, np.pi)
        along = xx * np.cos(river_angle) + yy * np.sin(river_angle)
        across = -xx * np.sin(river_angle) + yy * np.cos(river_angle)
        centre = across.mean() + rng.uniform(-size / 4, size / 4)
        meander = rng.uniform(2, size / 8) * np.sin(
            2 * np.pi * along / rng.uniform(size / 2, 2 * size) + rng.uniform(0, 2 * np.pi)
        )
        water = np.abs(across - centre - meander) < rng.uniform(1.5, 3.5)
    road &= ~water

    # textures: rows in fields (orientation per parcel), tree crowns in forests, patches elsewhere
    rows_along_u = rng.random(num_parcels) < 0.5
    period = rng.uniform(2.5, 4.0)
    rows = np.sin(2 * np.pi * np.where(rows_along_u[parcel], u, v) / period)
    crowns = _smooth_noise(rng, size, 0.8)
    patches = _smooth_noise(rng, size, 3.0)
    patterns = {FIELD: rows, FOREST: crowns}

    def texture(kind: np.ndarray) -> np.ndarray:
        pixel_kind = kind[parcel]
        pattern = np.select([pixel_kind == k for k in patterns], list(patterns.values()), patches)
        return 1.0 + TEXTURE_AMPLITUDE[pixel_kind] * pattern

    ever_built = ((kind_before == BUILT) | (kind_after == BUILT))[parcel]
    building, owner, roof, built_day = _buildings(rng, parcel, ever_built, u, v, road | water, day_range)
    # on parcels that become built-up, buildings go up 1-12 months after the conversion
    newly_built = np.where(kind_before != BUILT, convert_day, -np.inf)
    built_day = np.maximum(built_day, newly_built[owner] + rng.uniform(30, 365, len(built_day)))

    years_back = int(np.ceil((day_range + YEAR) / YEAR))
    crop_by_year = np.empty((num_parcels, 2 * years_back + 1), np.int64)
    crop_by_year[:, 0] = rng.integers(0, len(CROP_PEAK_DOY), num_parcels)
    for year in range(1, crop_by_year.shape[1]):
        kept = rng.random(num_parcels) < CROP_KEPT
        fresh = rng.integers(0, len(CROP_PEAK_DOY), num_parcels)
        crop_by_year[:, year] = np.where(kept, crop_by_year[:, year - 1], fresh)
    return Landscape(
        parcel=parcel,
        kind_before=kind_before,
        kind_after=kind_after,
        convert_day=convert_day,
        brightness=rng.uniform(0.9, 1.1, num_parcels),
        phenology_shift=rng.uniform(-12, 12, num_parcels),
        crop_by_year=crop_by_year,
        first_year=-years_back,
        texture_before=texture(kind_before),
        texture_after=texture(kind_after),
        road=road,
        water=water,
        building=building,
        roof=roof,
        built_day=built_day,
        hr_doy=float(hr_doy),
    )


def _buildings(rng, parcel, built, u, v, blocked, day_range):
    """Building blocks on a lattice inside built-up parcels, away from parcel edges and roads.

    Returns the building id map (-1 = none), each building's parcel, roof colour and construction day.
    """
    spacing = rng.uniform(5.0, 8.0)
    side = rng.uniform(2.5, spacing - 1.5)
    offset_u, offset_v = rng.uniform(0, spacing, 2)
    inside = (np.mod(u - offset_u, spacing) < side) & (np.mod(v - offset_v, spacing) < side)
    edge = np.zeros(parcel.shape, bool)
    edge[1:] |= parcel[1:] != parcel[:-1]
    edge[:, 1:] |= parcel[:, 1:] != parcel[:, :-1]
    interior = ~ndimage.binary_dilation(edge | blocked, iterations=1)
    footprint = inside & built & interior
    cell = np.floor((u - offset_u) / spacing) * 4099 + np.floor((v - offset_v) / spacing)
    building = np.full(parcel.shape, -1, np.int64)
    if footprint.any():
        _, ids = np.unique(cell[footprint], return_inverse=True)
        building[footprint] = ids
    count = int(building.max()) + 1
    owner = np.zeros(count, np.int64)  # parcel of each building
    owner[building[footprint]] = parcel[footprint]
    keep = rng.random(count) < 0.8  # empty lots
    building[building >= 0] = np.where(keep[building[building >= 0]], building[building >= 0], -1)
    roof = ROOFS[rng.integers(0, len(ROOFS), count)] * rng.uniform(0.92, 1.08, (count, 1))
    # a third of the buildings are built at some day within the range; the rest always existed
    is_new = rng.random(count) < 0.35
    built_day = np.where(is_new, rng.uniform(-day_range, day_range, count), -np.inf)
    return building, owner, roof, built_day


def _greenness(doy: np.ndarray | float, peak: np.ndarray | float, width: np.ndarray | float) -> np.ndarray:
    distance = np.mod(doy - peak + YEAR / 2, YEAR) - YEAR / 2  # circular distance in days
    return np.exp(-np.square(distance / width))


def render(land: Landscape, day: float) -> np.ndarray:
    """The scene `day` days after the HR acquisition, as 3×H×W float RGB in [0, 1]."""
    doy = land.hr_doy + day
    year = int(np.floor(doy / YEAR)) - land.first_year
    crop = land.crop_by_year[:, int(np.clip(year, 0, land.crop_by_year.shape[1] - 1))]
    green = _greenness(np.mod(doy, YEAR) + land.phenology_shift, CROP_PEAK_DOY[crop], CROP_SEASON_DAYS[crop])
    field = CROP_SOIL[crop] * (1 - green[:, None]) + CROP_CANOPY[crop] * green[:, None]
    season = 0.5 + 0.5 * np.cos(2 * np.pi * (doy - 190.0) / YEAR)  # 1 in midsummer, 0 in midwinter
    by_kind = np.stack(
        [
            np.zeros(3),  # fields are per parcel, filled in below
            FOREST_WINTER * (1 - season) + FOREST_SUMMER * season,
            MEADOW_WINTER * (1 - season) + MEADOW_SUMMER * season,
            BUILT_GROUND,
        ]
    )
    converted = day >= land.convert_day
    kind = np.where(converted, land.kind_after, land.kind_before)
    colour = np.where((kind == FIELD)[:, None], field, by_kind[kind]) * land.brightness[:, None]
    texture = np.where(converted[land.parcel], land.texture_after, land.texture_before)
    image = colour[land.parcel] * texture[..., None]
    image[land.road] = ROAD
    image[land.water] = WATER * (0.9 + 0.1 * texture[land.water][:, None])

    has_building = land.building >= 0
    present = np.zeros_like(has_building)
    present[has_building] = land.built_day[land.building[has_building]] <= day
    image[present] = land.roof[land.building[present]]
    shadow = np.zeros_like(present)
    shadow[1:, 1:] = present[:-1, :-1]  # sun from the top left
    shadow &= ~present
    image[shadow] *= SHADOW
    image *= 1.0 + 0.06 * np.cos(2 * np.pi * (doy - 172.0) / YEAR)  # sun elevation
    return np.clip(image, 0.0, 1.0).transpose(2, 0, 1)


# Sentinel-2's 13 bands in the fMoW-Sentinel / L1C order; B4, B3, B2 (indices 3, 2, 1) are the RGB.
S2_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
S2_RGB = (3, 2, 1)  # index of the band observing red, green, blue: the records' suggested data.lr_rgb
# The other bands: value = w_r·r + w_g·g + w_b·b + w_veg·veg + offset, clipped to [0, 1], with
# veg = max(g − (r + b) / 2, 0) a greenness excess (high on canopy, 0 on soil, roads, roofs and water),
# so the red-edge and NIR bands brighten over vegetation and the SWIR bands darken, as real ones do.
#                         w_r   w_g   w_b   w_veg  offset
S2_PROXIES = {"B1":     (0.10, 0.20, 0.60,  0.0,  0.05),   # coastal aerosol: bluish
              "B5":     (0.60, 0.30, 0.00,  0.6,  0.02),   # red edge 1
              "B6":     (0.40, 0.30, 0.00,  1.4,  0.04),   # red edge 2
              "B7":     (0.35, 0.30, 0.00,  1.8,  0.05),   # red edge 3
              "B8":     (0.30, 0.30, 0.30,  2.0,  0.03),   # NIR
              "B8A":    (0.30, 0.30, 0.30,  2.1,  0.04),   # narrow NIR
              "B9":     (0.10, 0.10, 0.10,  0.5,  0.10),   # water vapour: low contrast
              "B10":    (0.05, 0.05, 0.05,  0.0,  0.02),   # cirrus: nearly flat (clouds show in it)
              "B11":    (0.70, 0.30, 0.10, -0.4,  0.05),   # SWIR 1
              "B12":    (0.60, 0.20, 0.10, -0.6,  0.02)}   # SWIR 2


def sentinel2_bands(rgb: np.ndarray) -> np.ndarray:
    """A 3×H×W RGB scene in [0, 1] -> 13×H×W in S2_BANDS order: B4, B3, B2 = rgb exactly, the rest
    `S2_PROXIES` (deterministic, continuous and piecewise linear in the RGB)."""
    red, green, blue = rgb
    veg = np.maximum(green - (red + blue) / 2, 0.0)
    bands = np.empty((len(S2_BANDS),) + rgb.shape[1:], dtype=rgb.dtype)
    for index, channel in zip(S2_RGB, rgb):
        bands[index] = channel
    for name, (w_r, w_g, w_b, w_veg, offset) in S2_PROXIES.items():
        bands[S2_BANDS.index(name)] = np.clip(w_r * red + w_g * green + w_b * blue + w_veg * veg + offset, 0.0, 1.0)
    return bands
