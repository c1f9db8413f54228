//! How often random digits written in a phone number's grouping are taken as a phone
//! number, with every region's numbering plan (the default), with Germany's only, and with none: the
//! price of finding national formats without a country code. Prints the table the README
//! quotes (`cargo test -p warden-redact --test it phone_shapes -- --nocapture`).

use warden_redact::Detector;

/// Groupings written in national formats somewhere, and the separators people use.
const SHAPES: &[&[usize]] = &[
    &[3, 3],
    &[2, 2, 2],
    &[3, 4],
    &[4, 4],
    &[2, 3, 3],
    &[3, 3, 3],
    &[2, 2, 2, 2],
    &[3, 3, 4],
];

fn taken(d: &Detector, shape: &[usize], sep: &str, seed: u64) -> f64 {
    let mut x = seed;
    let mut digit = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        char::from(b'0' + (x % 10) as u8)
    };
    let n = 500;
    let hits = (0..n)
        .filter(|_| {
            let groups: Vec<String> = shape
                .iter()
                .map(|&l| (0..l).map(|_| digit()).collect())
                .collect();
            let text = format!("value {} here", groups.join(sep));
            d.find(&text).iter().any(|f| f.entity.name() == "PHONE")
        })
        .count();
    hits as f64 / n as f64
}

#[test]
fn random_grouped_digits_taken_as_phone_numbers() {
    let all = Detector::new(&[]).unwrap();
    let de = Detector::with_phone_regions(&[], &["DE".into()]).unwrap();
    let none = Detector::with_phone_regions(&[], &[]).unwrap();
    println!("| grouping | every region | DE only | none |");
    println!("|---|---:|---:|---:|");
    for (i, shape) in SHAPES.iter().enumerate() {
        let seed = 0x9E37_79B9_7F4A_7C15 + i as u64;
        let name: Vec<String> = shape.iter().map(|l| "n".repeat(*l)).collect();
        let (a, u, z) = (
            taken(&all, shape, " ", seed),
            taken(&de, shape, " ", seed),
            taken(&none, shape, " ", seed),
        );
        println!("| `{}` | {a:.2} | {u:.2} | {z:.2} |", name.join(" "));
        assert!(u <= a && z <= u, "fewer regions never take more: {shape:?}");
        if shape == &[2, 2, 2, 2] {
            assert_eq!(u, 0.0, "no German number is written nn nn nn nn");
        }
    }
}
