//! Great-circle geometry for the radius filter: a bounding box of latitude and longitude
//! that the index can answer with two range queries, then the exact haversine distance
//! for the documents inside it.
//!
//! The box follows J. P. Matuschek, "Finding Points Within a Distance of a
//! Latitude/Longitude Using Bounding Coordinates": exact for a sphere, widened to every
//! longitude when the circle reaches a pole, and split in two when it crosses the
//! antimeridian.

/// Mean Earth radius (IUGG), in km.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Slack added to every side of the box, in degrees, so that rounding never drops a point
/// that the exact distance accepts.
const BOX_SLACK_DEGREES: f64 = 1e-9;

/// The great-circle distance between two points given in degrees, in km.
pub fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let d_phi = (lat2 - lat1).to_radians();
    let d_lambda = (lon2 - lon1).to_radians();
    let a = (d_phi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (d_lambda / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
}

/// Checks a radius query's numbers.
pub fn validate(lat: f64, lon: f64, radius_km: f64) -> Result<(), String> {
    if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
        return Err("lat must be from -90 to 90".into());
    }
    if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
        return Err("lon must be from -180 to 180".into());
    }
    if !radius_km.is_finite() || radius_km <= 0.0 || radius_km > crate::MAX_RADIUS_KM {
        return Err(format!("radius_km must be more than 0 and at most {}", crate::MAX_RADIUS_KM));
    }
    Ok(())
}

/// Degrees of latitude and longitude that contain every point within the radius.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundingBox {
    pub lat_min: f64,
    pub lat_max: f64,
    /// Longitude ranges: one, or two when the box crosses the antimeridian.
    pub lon: LonRange,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LonRange {
    /// Every longitude (the circle reaches a pole).
    All,
    /// `min <= lon <= max`.
    Within(f64, f64),
    /// `lon >= min` or `lon <= max` (the box crosses the antimeridian).
    Outside(f64, f64),
}

impl BoundingBox {
    pub fn around(lat: f64, lon: f64, radius_km: f64) -> BoundingBox {
        let angular = radius_km / EARTH_RADIUS_KM;
        let (phi, lambda) = (lat.to_radians(), lon.to_radians());
        let (phi_min, phi_max) = (phi - angular, phi + angular);
        let half_pi = std::f64::consts::FRAC_PI_2;
        let deg = |r: f64| r.to_degrees();
        if phi_min <= -half_pi || phi_max >= half_pi {
            return BoundingBox {
                lat_min: deg(phi_min.max(-half_pi)) - BOX_SLACK_DEGREES,
                lat_max: deg(phi_max.min(half_pi)) + BOX_SLACK_DEGREES,
                lon: LonRange::All,
            };
        }
        let ratio = angular.sin() / phi.cos();
        if ratio >= 1.0 {
            return BoundingBox { lat_min: deg(phi_min), lat_max: deg(phi_max), lon: LonRange::All };
        }
        let d_lambda = ratio.asin();
        let pi = std::f64::consts::PI;
        let mut lambda_min = lambda - d_lambda;
        let mut lambda_max = lambda + d_lambda;
        let lon = if lambda_min < -pi || lambda_max > pi {
            if lambda_min < -pi {
                lambda_min += 2.0 * pi;
            }
            if lambda_max > pi {
                lambda_max -= 2.0 * pi;
            }
            LonRange::Outside(deg(lambda_min) - BOX_SLACK_DEGREES, deg(lambda_max) + BOX_SLACK_DEGREES)
        } else {
            LonRange::Within(deg(lambda_min) - BOX_SLACK_DEGREES, deg(lambda_max) + BOX_SLACK_DEGREES)
        };
        BoundingBox {
            lat_min: deg(phi_min) - BOX_SLACK_DEGREES,
            lat_max: deg(phi_max) + BOX_SLACK_DEGREES,
            lon,
        }
    }

    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        let lon_ok = match self.lon {
            LonRange::All => true,
            LonRange::Within(min, max) => (min..=max).contains(&lon),
            LonRange::Outside(min, max) => lon >= min || lon <= max,
        };
        lon_ok && (self.lat_min..=self.lat_max).contains(&lat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_degree_of_latitude_is_about_111_km() {
        let d = haversine_km(0.0, 0.0, 1.0, 0.0);
        assert!((d - 111.195).abs() < 0.001, "{d}");
        assert_eq!(haversine_km(51.5, -0.1, 51.5, -0.1), 0.0);
        let london_paris = haversine_km(51.5074, -0.1278, 48.8566, 2.3522);
        assert!((london_paris - 343.5).abs() < 1.0, "{london_paris}");
    }

    #[test]
    fn the_box_contains_every_point_of_the_circle() {
        // Points on circles of several radii around several centres, poles and the
        // antimeridian included, must all fall in the box.
        let centres = [
            (0.0, 0.0),
            (51.5, -0.1),
            (-33.9, 151.2),
            (64.1, -21.9),
            (10.0, 179.9),
            (-10.0, -179.5),
            (89.0, 0.0),
        ];
        for &(lat, lon) in &centres {
            for radius in [1.0, 50.0, 500.0, 3000.0] {
                let bbox = BoundingBox::around(lat, lon, radius);
                for step in 0..360 {
                    let bearing = f64::from(step).to_radians();
                    let (plat, plon) = destination(lat, lon, bearing, radius * 0.999_999);
                    assert!(
                        bbox.contains(plat, plon),
                        "{lat},{lon} r={radius}: ({plat},{plon}) not in {bbox:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn circles_over_a_pole_or_the_antimeridian_widen_or_split_the_box() {
        assert_eq!(BoundingBox::around(89.5, 10.0, 100.0).lon, LonRange::All);
        assert!(matches!(BoundingBox::around(0.0, 179.9, 100.0).lon, LonRange::Outside(_, _)));
        assert!(matches!(BoundingBox::around(0.0, 0.0, 100.0).lon, LonRange::Within(_, _)));
    }

    /// The point `distance_km` from a start along `bearing` (radians), in degrees.
    fn destination(lat: f64, lon: f64, bearing: f64, distance_km: f64) -> (f64, f64) {
        let delta = distance_km / EARTH_RADIUS_KM;
        let phi1 = lat.to_radians();
        let lambda1 = lon.to_radians();
        let phi2 = (phi1.sin() * delta.cos() + phi1.cos() * delta.sin() * bearing.cos()).asin();
        let lambda2 =
            lambda1 + (bearing.sin() * delta.sin() * phi1.cos()).atan2(delta.cos() - phi1.sin() * phi2.sin());
        let mut lon2 = lambda2.to_degrees();
        if lon2 > 180.0 {
            lon2 -= 360.0;
        } else if lon2 < -180.0 {
            lon2 += 360.0;
        }
        (phi2.to_degrees(), lon2)
    }
}
