# Transcribed from LeapBeyond/scrubadub tests (Apache-2.0): each BEFORE sentence of a test docstring
# or clean() input, with the values its AFTER line replaces. (file@commit, class, text, values)
SSN1 = "tests/test_detector_en_US_social_security_number.py@06936be6bd79f5268ffb7967b782b484009cb5eb"
SSN2 = "tests/test_ssn.py@3cc3a03b3ca5c02a8709d21f0383dc2ac350ed73"
CC = "tests/test_detector_credit_card.py@02a2893c49247ea128f81f07e1cb8fb38acace25"
PH = "tests/test_phone_numbers.py@1fbb132d204a906599588d15b11042b2e2c967c9"
EM = "tests/test_detector_emails.py@31954e4f8a799d1c1208e4c3bd335210d66de080"
CR = "tests/test_credentials.py@1d812e7351a1d536c5ffb8f635fccc5418aa47d9"
ROWS = [
(SSN1, "US_SSN", "My social security number is 726-60-2033", ["726-60-2033"]),
(SSN1, "US_SSN", "My social security number is 109-99-6000", ["109-99-6000"]),
(SSN1, "US_SSN", "My social security number is 109.99.6000", ["109.99.6000"]),
(SSN1, "US_SSN", "My social security number is 109 99 6000", ["109 99 6000"]),
(SSN1, "US_SSN", "818-09-2900", ["818-09-2900"]),  # test_generate's expected faker output
(SSN2, "US_SSN", "My social security number is 812-80-1276", ["812-80-1276"]),
(SSN2, "US_SSN", "My social security number is 812.80.1276", ["812.80.1276"]),
(SSN2, "US_SSN", "My social security number is 812 80 1276", ["812 80 1276"]),
("dcorbett/scrubadub tests/test_ssn.py@072cd4ec38ef0631bbdeca5a898c3a24fc9c64f8 (test_redact)", "US_SSN", "Lorem ipsum dolor sit amet, 812 80 1276 consectetur adipiscing elit", ["812 80 1276"]),
]
for n in ["378282246310005", "371449635398431", "378734493671000", "30569309025904", "38520000023237",
          "6011111111111117", "6011000990139424", "3530111333300000", "3566002020360505",
          "5555555555554444", "5105105105105100", "4111111111111111", "4012888888881881"]:
    ROWS.append((CC, "CREDIT_CARD", f"My credit card is {n}.", [n]))
ROWS.append((CC, "CREDIT_CARD", "4012888888881881.", ["4012888888881881"]))
for n in ["1-312-515-2239", "+1-312-515-2239", "1 (312) 515-2239", "312-515-2239", "(312) 515-2239",
          "(312)515-2239", "312-515-2239 x12", "312-515-2239 ext. 12", "312-515-2239 ext.12",
          "+47 21 30 85 99", "+45 69 19 88 56", "+46 852 503 499", "+31 619 837 236",
          "+86 135 3727 4136", "+61267881324"]:
    ROWS.append((PH, "PHONE", f"My phone number is {n}", [n]))
ROWS.append((PH, "PHONE", "Call me on my cell 312.714.8142 or in my office 773.415.7432", ["312.714.8142", "773.415.7432"]))
for e in ["john@gmail.com", "John@gmail.com", "John1@example.com", "adam80@example.info", "HELLO@EXAMPLE.COM", "john at gmail.com"]:
    ROWS.append((EM, "EMAIL", f"My email is {e}", [e]))
ROWS.append((CR, "SECRET", "username: root\npassword: root", ["root"]))  # the password: the second "root"
ROWS.append((CR, "SECRET", "username:root\npassword:crickets", ["crickets"]))
ROWS.append((CR, "SECRET", "username root\npassword crickets", ["crickets"]))
